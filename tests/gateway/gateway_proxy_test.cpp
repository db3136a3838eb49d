// dify-gateway in front of dify-emulator (TLS): tenant auth, app selection, key mapping,
// user namespacing in every place, isolation, errors, forwarding of every kind of body.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <gtest/gtest.h>

namespace gw::test {
namespace {

class GatewayProxy : public ::testing::Test
{
protected:
    running_emulator emu;
    running_gateway gw{emu};
    std::unique_ptr<http_client> c = gw.client();

    json::array recent() { return emu.stats().at("recent_requests").as_array(); }
};

TEST_F(GatewayProxy, BlockingChatUsesTheAppsDifyKeyAndNamespacesTheUser)
{
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("What is the refund policy?", "user-123"),
                       {{"X-Request-Id", "req-42"}, {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("answer"), "Turn 1. You said: \"What is the refund policy?\".");
    EXPECT_EQ(r.header("x-request-id"), "req-42");
    EXPECT_EQ(r.header("x-version"), "1.13.2") << "Dify's headers pass through";
    auto seen = recent().back();
    EXPECT_EQ(seen.at("app_key"), json::value(keys::chat));
    EXPECT_EQ(seen.at("user"), "alpha:user-123");
    EXPECT_EQ(seen.at("user_source"), "body");
    EXPECT_EQ(seen.at("headers").at("x-request-id"), "req-42");
    EXPECT_EQ(seen.at("headers").at("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

    // Without X-Request-Id the gateway makes one and sends it both ways.
    r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("again", "user-123"));
    EXPECT_EQ(r.header("x-request-id").size(), 32u);
    EXPECT_EQ(recent().back().at("headers").at("x-request-id"), json::value(r.header("x-request-id")));
}

TEST_F(GatewayProxy, HopByHopHeadersAndTheOnesConnectionNamesStayBehindInAnyCase)
{
    // Connection's tokens name headers in any case; each named header is dropped however it
    // is spelled, and so are the fixed hop-by-hop ones and names with '_'.
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hi", "u"),
                       {{"Connection", "keep-alive, X-Hop-One ,x-hop-TWO"},
                        {"x-HOP-one", "1"},
                        {"X-Hop-Two", "2"},
                        {"X-Hop-Three", "kept: Connection does not name it"},
                        {"Keep-Alive", "timeout=5"},
                        {"Proxy-Authorization", "Basic c2VjcmV0"},
                        {"X_Under", "4"},
                        {"X-Kept", "yes"}});
    ASSERT_EQ(r.status, 200) << r.body;
    const auto seen = recent().back();
    const auto& headers = seen.at("headers").as_object();
    EXPECT_EQ(headers.at("x-kept"), "yes");
    EXPECT_EQ(headers.at("x-hop-three"), "kept: Connection does not name it");
    for (const char* gone : {"x-hop-one", "x-hop-two", "keep-alive", "proxy-authorization", "x_under", "x-under"})
        EXPECT_FALSE(headers.contains(gone)) << gone;
}

TEST_F(GatewayProxy, AppsAreSelectedByPathAndTheirKeysNeverLeak)
{
    auto r = post_json(*c, "/apps/workflow/v1/workflows/run", tenant_keys::alpha,
                       json::object{{"inputs", json::object{{"topic", "tea"}}}, {"response_mode", "blocking"}, {"user", "u"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(recent().back().at("app_key"), json::value(keys::workflow));
    EXPECT_EQ(r.body.find("app-"), std::string::npos);
    for (const auto& [k, v] : r.headers) EXPECT_EQ(v.find("app-emu"), std::string::npos) << k;
    auto info = get(*c, "/apps/completion/v1/info", tenant_keys::alpha).json();
    EXPECT_EQ(info.at("mode"), "completion");
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::beta).json().at("mode"), "chat") << "beta's default app";
}

TEST_F(GatewayProxy, GatewayErrorsInDifysShape)
{
    auto r = c->request("GET", "/v1/info");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.json(), json::parse(R"({"code":"unauthorized","message":"Authorization header must be provided and start with 'Bearer'","status":401})"));
    EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"api\"");
    r = get(*c, "/v1/info", keys::chat);
    EXPECT_EQ(r.status, 401) << "a Dify key is not a gateway key";
    EXPECT_EQ(r.json().at("message"), "Access token is invalid");
    r = c->request("GET", "/v1/info", {{"Authorization", "Token " + tenant_keys::alpha}});
    EXPECT_EQ(r.json().at("message"), "Authorization scheme must be 'Bearer'");
    EXPECT_EQ(c->request("GET", "/v1/info", {{"Authorization", "bearer " + tenant_keys::alpha}}).status, 200);

    r = get(*c, "/apps/agent/v1/info", tenant_keys::beta);
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.json().at("code"), "forbidden");
    r = get(*c, "/apps/ghost/v1/info", tenant_keys::beta);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.json().at("code"), "app_not_found");
    r = get(*c, "/v2/info", tenant_keys::beta);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.json().at("code"), "not_found");
    EXPECT_EQ(emu.stats().at("requests_total"), 1) << "only the one good request reached Dify";
}

TEST_F(GatewayProxy, DifyErrorsPassThroughUnchanged)
{
    auto direct = emu.client();
    auto via = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, json::object{{"inputs", json::object()}, {"user", "u"}});
    auto raw = post_json(*direct, "/v1/chat-messages", keys::chat, json::object{{"inputs", json::object()}, {"user", "alpha:u"}});
    EXPECT_EQ(via.status, 400);
    EXPECT_EQ(via.body, raw.body);
    const auto before = emu.stats().at("requests_total").as_int64();
    auto unknown = get(*c, "/v1/no-such-endpoint", tenant_keys::alpha);
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(unknown.json().at("code"), "not_found") << "routes outside the route table are not forwarded";
    EXPECT_EQ(emu.stats().at("requests_total").as_int64(), before);
    auto unsupported = c->request("DELETE", "/v1/conversations/00000000-0000-4000-8000-000000000000",
                                  bearer(tenant_keys::alpha, ""));
    EXPECT_EQ(unsupported.status, 415) << "no JSON content type: Dify's own 415";
}

TEST_F(GatewayProxy, UserIsNamespacedInQueryFormAndJsonBodies)
{
    get(*c, "/v1/conversations?user=bob&limit=5", tenant_keys::alpha);
    auto seen = recent().back();
    EXPECT_EQ(seen.at("query"), "user=alpha%3Abob&limit=5");
    EXPECT_EQ(seen.at("user"), "alpha:bob");
    get(*c, "/v1/conversations", tenant_keys::alpha);
    EXPECT_EQ(recent().back().at("user"), "alpha:default") << "never Dify's shared DEFAULT-USER";

    auto up = c->request("POST", "/v1/files/upload", bearer(tenant_keys::beta, "multipart/form-data; boundary=XX"),
                         multipart_body("XX", {{"file", "a.txt", "text/plain", "hello"}, {"user", "", "", "carol"}}));
    EXPECT_EQ(up.status, 201) << up.body;
    EXPECT_EQ(recent().back().at("user"), "beta:carol");
    EXPECT_EQ(recent().back().at("user_source"), "form");
    up = c->request("POST", "/v1/files/upload", bearer(tenant_keys::beta, "multipart/form-data; boundary=XX"),
                    multipart_body("XX", {{"file", "a.txt", "text/plain", "hello"}}));
    EXPECT_EQ(recent().back().at("user"), "beta:default");

    auto conv = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hi", "dave")).json();
    std::string id(conv.at("conversation_id").as_string());
    auto del = c->request("DELETE", "/v1/conversations/" + id, bearer(tenant_keys::alpha), R"({"user": "dave"})");
    EXPECT_EQ(del.status, 204);
    EXPECT_EQ(del.body, "");
    EXPECT_EQ(recent().back().at("user"), "alpha:dave");
}

TEST_F(GatewayProxy, TenantsSharingAnAppCannotSeeEachOthersConversations)
{
    auto a = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("alpha's secret", "same-user")).json();
    std::string conv(a.at("conversation_id").as_string());
    std::string msg(a.at("id").as_string());

    auto listed = get(*c, "/v1/conversations?user=same-user", tenant_keys::beta).json();
    EXPECT_EQ(listed.at("data").as_array().size(), 0u);
    auto cont = post_json(*c, "/v1/chat-messages", tenant_keys::beta, chat_body("continue", "same-user", "blocking", conv));
    EXPECT_EQ(cont.status, 404);
    EXPECT_EQ(cont.json().at("message"), "Conversation Not Exists.");
    EXPECT_EQ(get(*c, "/v1/messages?user=same-user&conversation_id=" + conv, tenant_keys::beta).status, 404);
    EXPECT_EQ(post_json(*c, "/v1/messages/" + msg + "/feedbacks", tenant_keys::beta,
                        json::object{{"rating", "like"}, {"user", "same-user"}}).status, 404);
    // Posing as the other tenant's namespaced user does not work either.
    EXPECT_EQ(get(*c, "/v1/conversations?user=alpha:same-user", tenant_keys::beta).json().at("data").as_array().size(), 0u);
    // The owner still can.
    EXPECT_EQ(get(*c, "/v1/conversations?user=same-user", tenant_keys::alpha).json().at("data").as_array().size(), 1u);
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("more", "same-user", "blocking", conv)).status, 200);
}

TEST_F(GatewayProxy, BinaryBodiesAndUploadsFromPythonRequests)
{
    // Python requests sends the file part without a Content-Type; the gateway supplies one.
    std::string raw = "--BB\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nu1\r\n"
                      "--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"contract.pdf\"\r\n\r\n%PDF-1.4 data\r\n--BB--\r\n";
    auto up = c->request("POST", "/v1/files/upload", bearer(tenant_keys::alpha, "multipart/form-data; boundary=BB"), raw);
    ASSERT_EQ(up.status, 201) << up.body;
    EXPECT_EQ(up.json().at("mime_type"), "application/pdf");
    std::string file_id(up.json().at("id").as_string());
    auto body = chat_body("read it", "u1");
    body["files"] = json::array{json::object{{"type", "document"}, {"transfer_method", "local_file"}, {"upload_file_id", file_id}}};
    ASSERT_EQ(post_json(*c, "/v1/chat-messages", tenant_keys::alpha, body).status, 200);
    auto preview = get(*c, "/v1/files/" + file_id + "/preview?as_attachment=true", tenant_keys::alpha);
    EXPECT_EQ(preview.status, 200);
    EXPECT_EQ(preview.body, "%PDF-1.4 data");
    EXPECT_EQ(preview.header("content-disposition"), "attachment; filename*=UTF-8''contract.pdf");

    auto audio = post_json(*c, "/v1/text-to-audio", tenant_keys::alpha, json::object{{"text", "Hello there"}, {"user", "u1"}});
    EXPECT_EQ(audio.status, 200);
    EXPECT_EQ(audio.header("content-type"), "audio/mpeg");
    EXPECT_EQ(audio.body.size(), 46u);
    EXPECT_EQ(audio.body.substr(0, 3), "ID3");
    auto stt = c->request("POST", "/v1/audio-to-text", bearer(tenant_keys::alpha, "multipart/form-data; boundary=BB"),
                          multipart_body("BB", {{"file", "a.wav", "audio/wav", std::string(1000, '\0')}}));
    EXPECT_EQ(stt.json().at("text"), "Transcript of a.wav (1000 bytes).");
}

TEST_F(GatewayProxy, EveryEndpointForwards)
{
    auto chat = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body("hello", "u")).json();
    std::string conv(chat.at("conversation_id").as_string()), msg(chat.at("id").as_string());
    struct call
    {
        std::string method, path, body;
        int status;
    };
    std::vector<call> calls{
        {"GET", "/v1/parameters", "", 200},
        {"GET", "/v1/meta", "", 200},
        {"GET", "/v1/site", "", 200},
        {"GET", "/v1/info", "", 200},
        {"GET", "/v1/messages?user=u&conversation_id=" + conv, "", 200},
        {"GET", "/v1/messages/" + msg + "/suggested?user=u", "", 200},
        {"POST", "/v1/messages/" + msg + "/feedbacks", R"({"rating": "like", "user": "u"})", 200},
        {"GET", "/v1/app/feedbacks", "", 403},                // app-wide, on an app beta uses too
        {"GET", "/apps/completion/v1/app/feedbacks", "", 200}, // alpha is the completion app's only tenant
        {"POST", "/v1/conversations/" + conv + "/name", R"({"name": "renamed", "user": "u"})", 200},
        {"GET", "/v1/conversations/" + conv + "/variables?user=u", "", 200},
        {"POST", "/v1/chat-messages/00000000-0000-4000-8000-000000000000/stop", R"({"user": "u"})", 200},
        {"POST", "/apps/completion/v1/completion-messages", R"({"inputs": {}, "query": "q", "user": "u"})", 200},
        {"POST", "/apps/completion/v1/completion-messages/x/stop", R"({"user": "u"})", 200},
        {"POST", "/apps/workflow/v1/workflows/tasks/x/stop", R"({"user": "u"})", 200},
        {"GET", "/apps/workflow/v1/workflows/logs", "", 200},
        {"GET", "/v1/", "", 200},
        {"POST", "/apps/chatflow/v1/chat-messages", R"({"inputs": {}, "query": "q", "user": "u"})", 200},
        {"GET", "/apps/chatflow/v1/conversations?user=u", "", 200},
        {"GET", "/apps/workflow/v1/parameters", "", 200},
    };
    for (const auto& k : calls) {
        auto r = c->request(k.method, k.path, bearer(tenant_keys::alpha), k.body);
        EXPECT_EQ(r.status, k.status) << k.method << " " << k.path << ": " << r.body;
    }
}

TEST(GatewayKeys, AnAppsDifyKeysAreUsedInTurn)
{
    auto apps = emulator::parse_apps(R"([
      {"key": "app-rotatekey000000000000001", "mode": "chat", "name": "Rotating"},
      {"key": "app-rotatekey000000000000002", "mode": "chat", "name": "Rotating"}
    ])");
    running_emulator emu({}, true, apps);
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.threads = 1;
        c.apps["chat"].api_keys = {"app-rotatekey000000000000001", "app-rotatekey000000000000002"};
    });
    auto c = gw.client();
    for (int i = 0; i < 4; ++i) ASSERT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200);
    auto recent = emu.stats().at("recent_requests").as_array();
    ASSERT_EQ(recent.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i)
        EXPECT_EQ(recent[i].at("app_key"), json::value(i % 2 == 0 ? "app-rotatekey000000000000001" : "app-rotatekey000000000000002"));
}

TEST(GatewayLimits, OversizedBodiesHeadersAndMalformedRequests)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.max_request_body_bytes = 1024;
        c.server.max_header_bytes = 2048;
    });
    auto c = gw.client();
    auto r = post_json(*c, "/v1/chat-messages", tenant_keys::alpha, chat_body(std::string(2000, 'x'), "u"));
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(r.json(), json::parse(R"({"code":"request_too_large","message":"The request body is larger than the gateway accepts.","status":413})"));
    auto raw = c->raw_exchange("GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 431 ", 0), 0u) << raw.substr(0, 60);
    raw = c->raw_exchange("NOT-HTTP\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 400 ", 0), 0u) << raw.substr(0, 60);
    raw = c->raw_exchange("POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                          "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 400 ", 0), 0u) << raw.substr(0, 60);
    // Without a valid key, the answer comes before the (announced, never sent) body; a
    // client waiting for 100-continue gets the refusal and the connection closes.
    raw = c->raw_exchange("POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 401 ", 0), 0u) << raw.substr(0, 60);
    EXPECT_NE(raw.find("Connection: close"), std::string::npos);
    EXPECT_EQ(emu.stats().at("requests_total"), 0) << "nothing malformed reached Dify";
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200) << "still serving";
}

TEST(GatewayLimits, ARefusedRequestsBodyIsReadBeforeTheAnswerOrTheConnectionLingers)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) { c.server.max_request_body_bytes = 4 << 20; });
    auto c = gw.client();
    // A small chunked body of a refused request is read to its end first: the connection
    // goes on (a proxy relaying it has then sent it all, and keeps its client's connection).
    const std::string chunked = "POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    auto raw = c->raw_exchange(chunked + "GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                               "\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 401 ", 0), 0u) << raw.substr(0, 60);
    EXPECT_NE(raw.find("HTTP/1.1 200 OK"), std::string::npos) << "the next request on the connection was served";
    // A body too large to read for nothing gets the answer at once and the connection closes;
    // the gateway reads what still comes before closing, so the answer is not lost to a reset.
    auto big = gw.client();
    raw = big->raw_exchange("POST /v1/chat-messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                            "Content-Length: 3000000\r\n\r\n" + std::string(3'000'000, 'x'));
    EXPECT_EQ(raw.rfind("HTTP/1.1 401 ", 0), 0u) << raw.substr(0, 60);
    EXPECT_NE(raw.find("Connection: close"), std::string::npos);
    EXPECT_EQ(emu.stats().at("requests_total"), 1) << "only the /v1/info";
}

TEST(GatewayBodies, BodiesWithNothingToRewriteAreStreamed)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.max_request_body_bytes = 1 << 20;
        c.tenants["alpha"].admin_apps = {"chat"}; // annotations are app-wide
    });
    auto c = gw.client();
    // Annotations do not carry `user`: the body passes as it arrives, byte for byte.
    std::string big(300'000, 'a');
    auto body = json::serialize(json::object{{"question", big}, {"answer", "x"}});
    auto r = c->request("POST", "/v1/apps/annotations", bearer(tenant_keys::alpha), body);
    EXPECT_EQ(r.status, 404) << "the emulator does not serve annotations; Dify's HTML 404 comes back";
    auto recent = emu.stats().at("recent_requests").as_array();
    ASSERT_FALSE(recent.empty());
    auto seen = recent.back();
    EXPECT_EQ(seen.at("path"), "/v1/apps/annotations");
    EXPECT_EQ(seen.at("body_bytes"), body.size());
    EXPECT_EQ(seen.at("headers").at("content-length"), json::value(std::to_string(body.size())));
    auto next = get(*c, "/v1/info", tenant_keys::alpha);
    EXPECT_EQ(next.status, 200) << "the connection stays usable";
}

TEST(GatewayLimits, SlowHeadersAndIdleConnectionsAreClosed)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.server.client_header_timeout_ms = std::chrono::milliseconds(100);
        c.server.client_idle_timeout_ms = std::chrono::milliseconds(150);
    });
    auto c = gw.client();
    // A request whose headers never finish (slow loris) is cut off with a 408.
    EXPECT_EQ(c->raw_exchange("GET /v1/info HTTP/1.1\r\nHost: x\r\n").rfind("HTTP/1.1 408 ", 0), 0u);
    // A connection that never sends a request is closed after the idle time.
    EXPECT_EQ(c->raw_exchange(""), "");
    EXPECT_EQ(get(*c, "/v1/info", tenant_keys::alpha).status, 200);
}

TEST(GatewayLimits, PipelinedRequestsAreAnsweredInOrder)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    std::string one = "GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha + "\r\n\r\n";
    std::string two = "GET /apps/workflow/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tenant_keys::alpha +
                      "\r\nConnection: close\r\n\r\n";
    auto raw = c->raw_exchange(one + two);
    auto first = raw.find("\"mode\":\"chat\"");
    auto second = raw.find("\"mode\":\"workflow\"");
    ASSERT_NE(first, std::string::npos) << raw;
    ASSERT_NE(second, std::string::npos) << raw;
    EXPECT_LT(first, second);
}

} // namespace
} // namespace gw::test
