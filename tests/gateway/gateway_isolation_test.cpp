// Tenant isolation where Dify itself does not check the end user: the gateway records
// which tenant created each task, conversation, workflow run and uploaded file, and
// refuses another tenant's use of them with 404 before the call reaches Dify. Also: a body
// the gateway cannot rewrite is refused, never forwarded with the tenant's own `user`.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <gtest/gtest.h>

namespace gw::test {
namespace {

std::string to_upper(std::string s)
{
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return s;
}

std::string hex_of(char ch)
{
    char b[3];
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(ch));
    return b;
}

class GatewayIsolation : public ::testing::Test
{
protected:
    running_emulator emu;
    running_gateway gw{emu};
    std::unique_ptr<http_client> c = gw.client();

    std::int64_t reached() { return emu.stats().at("requests_total").as_int64(); }
    json::array recent() { return emu.stats().at("recent_requests").as_array(); }
    // Asserts a 404 from the gateway that never reached Dify.
    void expect_refused(const http_response& r, std::int64_t before, const std::string& code = "not_found")
    {
        EXPECT_EQ(r.status, 404) << r.body;
        EXPECT_EQ(r.json().at("code"), json::value(code)) << r.body;
        EXPECT_EQ(reached(), before) << "nothing reached Dify";
    }
};

TEST_F(GatewayIsolation, WorkflowRunsAndTheirTasksBelongToTheTenantThatStartedThem)
{
    auto run = post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                         json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
    ASSERT_EQ(run.status, 200) << run.body;
    std::string run_id(run.json().at("workflow_run_id").as_string());

    // Dify answers run details to anyone with the app key.
    auto before = reached();
    expect_refused(get(*c, "/apps/workflow/v1/workflows/run/" + run_id, tenant_keys::beta), before);
    before = reached();
    auto upper = get(*c, "/apps/workflow/v1/workflows/run/" + to_upper(run_id), tenant_keys::beta);
    expect_refused(upper, before); // Dify's UUID routes ignore case
    before = reached();
    auto encoded = get(*c, "/apps/workflow/v1/workflows/run/%" + hex_of(run_id[0]) + run_id.substr(1), tenant_keys::beta);
    expect_refused(encoded, before); // nor percent-encoding

    // A streamed run's task: Dify's workflow stop does not check the user.
    auto stream = gw.client();
    stream->send("POST", "/apps/workflow/v1/workflows/run", bearer(tenant_keys::alpha),
                 R"({"inputs": {"topic": "tea"}, "response_mode": "streaming", "user": "u"})");
    ASSERT_EQ(stream->read_head().status, 200);
    std::string task_id;
    while (task_id.empty()) {
        auto frame = stream->read_until("\n\n");
        auto at = frame.find("data: ");
        if (at != std::string::npos) task_id = std::string(json::parse(frame.substr(at + 6)).at("task_id").as_string());
    }
    stream->read_rest();
    before = reached();
    auto stop = post_json(*c, "/apps/workflow/v1/workflows/tasks/" + task_id + "/stop", tenant_keys::beta,
                          json::object{{"user", "u"}});
    expect_refused(stop, before);
    EXPECT_EQ(stop.json().at("message"), "Task not found.");

    // The owner still can.
    auto mine = get(*c, "/apps/workflow/v1/workflows/run/" + run_id, tenant_keys::alpha);
    EXPECT_EQ(mine.status, 200) << mine.body;
    EXPECT_EQ(mine.json().at("id"), json::value(run_id));
    EXPECT_EQ(post_json(*c, "/apps/workflow/v1/workflows/tasks/" + task_id + "/stop", tenant_keys::alpha,
                        json::object{{"user", "u"}}).status, 200);
}

TEST_F(GatewayIsolation, StreamedTasksAreRecordedWhileTheStreamRuns)
{
    auto stream = gw.client();
    stream->send("POST", "/v1/chat-messages", bearer(tenant_keys::alpha),
                 json::serialize(chat_body("one two three four five six seven eight", "erin", "streaming")));
    ASSERT_EQ(stream->read_head().status, 200);
    auto first = stream->read_until("\n\n");
    auto event = json::parse(first.substr(first.find("data: ") + 6));
    std::string task_id(event.at("task_id").as_string());
    std::string conversation_id(event.at("conversation_id").as_string());
    stream->read_rest();

    auto before = reached();
    expect_refused(post_json(*c, "/v1/chat-messages/" + task_id + "/stop", tenant_keys::beta, json::object{{"user", "erin"}}),
                   before);
    before = reached();
    expect_refused(c->request("DELETE", "/v1/conversations/" + conversation_id, bearer(tenant_keys::beta), R"({"user":"erin"})"),
                   before);
    before = reached();
    expect_refused(get(*c, "/v1/messages?user=erin&conversation_id=" + conversation_id, tenant_keys::beta), before);
    before = reached();
    expect_refused(post_json(*c, "/v1/chat-messages", tenant_keys::beta, chat_body("continue", "erin", "blocking", conversation_id)),
                   before);
    EXPECT_EQ(get(*c, "/v1/messages?user=erin&conversation_id=" + conversation_id, tenant_keys::alpha).status, 200);
}

TEST_F(GatewayIsolation, UploadedFilesAreTheUploadersOnly)
{
    auto up = c->request("POST", "/v1/files/upload", bearer(tenant_keys::alpha, "multipart/form-data; boundary=XX"),
                         multipart_body("XX", {{"file", "notes.txt", "text/plain", "alpha's notes"}, {"user", "", "", "u"}}));
    ASSERT_EQ(up.status, 201) << up.body;
    std::string file_id(up.json().at("id").as_string());

    auto before = reached();
    expect_refused(get(*c, "/v1/files/" + file_id + "/preview?user=u", tenant_keys::beta), before, "file_not_found");
    // A reference to it in a generate call, in `files` or nested in a file input.
    json::object ref{{"type", "document"}, {"transfer_method", "local_file"}, {"upload_file_id", file_id}};
    auto body = chat_body("summarize", "u");
    body["files"] = json::array{ref};
    before = reached();
    expect_refused(post_json(*c, "/v1/chat-messages", tenant_keys::beta, body), before, "file_not_found");
    before = reached();
    auto wf = json::object{{"inputs", json::object{{"doc", json::array{ref}}}}, {"response_mode", "blocking"}, {"user", "u"}};
    expect_refused(post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::beta, wf), before, "file_not_found");

    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, body).status, 200);
    // Dify previews a file once a message references it.
    auto preview = get(*c, "/v1/files/" + file_id + "/preview?user=u", tenant_keys::alpha);
    EXPECT_EQ(preview.status, 200);
    EXPECT_EQ(preview.body, "alpha's notes");
}

TEST_F(GatewayIsolation, BodiesTheGatewayCannotRewriteAreRefusedNotForwarded)
{
    // Flask reads application/*+json as JSON: the gateway rewrites it too.
    auto r = c->request("POST", "/v1/chat-messages", bearer(tenant_keys::alpha, "application/vnd.api+json"),
                        json::serialize(chat_body("hi", "beta:bob")));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(recent().back().at("user"), "alpha:beta:bob");

    // JSON Python accepts but this reader does not: deeper than 64, NaN, invalid UTF-8.
    std::string deep = std::string(70, '[') + std::string(70, ']');
    const std::vector<std::string> unreadable = {
        R"({"query": "hi", "inputs": {}, "user": "beta:bob", "x": )" + deep + "}",
        R"({"query": "hi", "inputs": {}, "user": "beta:bob", "x": NaN})",
        "{\"query\": \"hi\", \"inputs\": {}, \"user\": \"beta:bob\", \"x\": \"\xff\xfe\"}",
    };
    for (const auto& body : unreadable) {
        auto before = reached();
        r = c->request("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(r.json().at("code"), "bad_request");
        EXPECT_EQ(reached(), before) << "not forwarded: " << body;
    }

    // A multipart body without a usable boundary.
    auto before = reached();
    r = c->request("POST", "/v1/files/upload", bearer(tenant_keys::alpha, "multipart/form-data; boundary=ZZ"),
                   multipart_body("XX", {{"file", "a.txt", "text/plain", "x"}, {"user", "", "", "beta:bob"}}));
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(reached(), before);
    // A url-encoded form (Werkzeug reads `user` from it): rewritten like a query string.
    r = c->request("POST", "/v1/files/upload", bearer(tenant_keys::alpha, "application/x-www-form-urlencoded"),
                   "user=beta%3Abob");
    EXPECT_EQ(recent().back().at("user"), "alpha:beta:bob");
    // An empty JSON body still gets Dify's own answer (it carries no user).
    EXPECT_EQ(c->request("POST", "/v1/chat-messages", bearer(tenant_keys::alpha), "").status, 400);
    EXPECT_EQ(recent().back().at("path"), "/v1/chat-messages");
}

} // namespace
} // namespace gw::test
