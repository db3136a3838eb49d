// dify-emulator over TLS: routing, auth, `user` placement, every endpoint's behaviour and
// Dify's quirks, driven with a real HTTP client.
#include "tests/emulator/emulator_test_util.hpp"

#include <gtest/gtest.h>

namespace gw::test {
namespace {

class EmulatorApi : public ::testing::Test
{
protected:
    // A clock that ticks one second per reading: orderings by time are deterministic.
    static emulator::service_options ticking_clock()
    {
        emulator::service_options o;
        auto t = std::make_shared<std::int64_t>(1'750'000'000);
        o.clock = [t] { return (*t)++; };
        return o;
    }

    running_emulator emu{ticking_clock()};
    std::unique_ptr<http_client> c = emu.client();

    json::object chat(const std::string& query, const std::string& user, const std::string& conv = "")
    {
        auto r = post_json(*c, "/v1/chat-messages", keys::chat, chat_body(query, user, "blocking", conv));
        EXPECT_EQ(r.status, 200) << r.body;
        return r.json().as_object();
    }
};

TEST_F(EmulatorApi, IndexHealthUnknownPathAndWrongMethod)
{
    auto r = c->request("GET", "/v1/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.json().at("welcome"), "Dify OpenAPI");
    EXPECT_EQ(r.header("x-version"), "1.13.2");
    EXPECT_EQ(r.header("x-env"), "PRODUCTION");
    EXPECT_EQ(c->request("GET", "/health").json().at("status"), "ok");

    r = c->request("GET", "/v1/no-such-endpoint", bearer(keys::chat, ""));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
    EXPECT_NE(r.body.find("<title>404 Not Found</title>"), std::string::npos);

    r = c->request("GET", "/v1/chat-messages", bearer(keys::chat, ""));
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.json().at("code"), "method_not_allowed");
}

TEST_F(EmulatorApi, AuthErrorsAreDifysExactly)
{
    struct tc
    {
        header_list headers;
        std::string message;
    };
    std::vector<tc> cases{
        {{}, "Authorization header must be provided and start with 'Bearer'"},
        {{{"Authorization", "Bearer"}}, "Authorization header must be provided and start with 'Bearer'"},
        {{{"Authorization", "Basic abc"}}, "Authorization scheme must be 'Bearer'"},
        {{{"Authorization", "Bearer app-000000000000000000000000"}}, "Access token is invalid"},
        {{{"Authorization", "Bearer dataset-abc"}}, "Access token is invalid"},
    };
    for (const auto& t : cases) {
        auto r = c->request("GET", "/v1/info", t.headers);
        EXPECT_EQ(r.status, 401);
        EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"api\"");
        EXPECT_EQ(r.json(), json::parse(R"({"code":"unauthorized","message":")" + t.message + R"(","status":401})"));
        EXPECT_EQ(r.body.back(), '\n'); // flask-restx bodies end with a newline
    }
    auto r = c->request("GET", "/v1/info", {{"Authorization", "bEaReR " + keys::chat}});
    EXPECT_EQ(r.status, 200) << "scheme is case-insensitive";
    EXPECT_EQ(r.json().at("mode"), "chat");
}

TEST_F(EmulatorApi, UserIsReadWhereDifyReadsItAndRequiredWhereRequired)
{
    auto r = post_json(*c, "/v1/chat-messages", keys::chat, json::object{{"inputs", json::object()}, {"query", "hi"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json(), json::parse(R"({"code":"invalid_param","message":"Arg user must be provided.","status":400})"));
    // user in the query string of a JSON-body endpoint does not count
    r = post_json(*c, "/v1/chat-messages?user=u1", keys::chat, json::object{{"inputs", json::object()}, {"query", "hi"}});
    EXPECT_EQ(r.json().at("message"), "Arg user must be provided.");
    r = c->request("GET", "/v1/messages/00000000-0000-4000-8000-000000000000/suggested", bearer(keys::chat, ""));
    EXPECT_EQ(r.json().at("message"), "Arg user must be provided.");

    // JSON endpoints without a JSON content type: 415; empty JSON body: 400 bad_request.
    r = c->request("DELETE", "/v1/conversations/00000000-0000-4000-8000-000000000000", bearer(keys::chat, ""));
    EXPECT_EQ(r.status, 415);
    EXPECT_EQ(r.json().at("code"), "unsupported_media_type");
    r = c->request("DELETE", "/v1/conversations/00000000-0000-4000-8000-000000000000", bearer(keys::chat), "");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json().at("message"), "Invalid JSON payload received or JSON payload is empty.");
    r = c->request("POST", "/v1/chat-messages", bearer(keys::chat), "{not json");
    EXPECT_EQ(r.json().at("code"), "bad_request");

    auto stats = emu.stats().at("recent_requests").as_array();
    EXPECT_EQ(stats[1].at("user_source"), "");
}

TEST_F(EmulatorApi, MissingOptionalUserMeansSharedDefaultUser)
{
    auto upload = [&](const std::string& user_field) {
        std::vector<std::tuple<std::string, std::string, std::string, std::string>> parts{{"file", "a.txt", "text/plain", "x"}};
        if (!user_field.empty()) parts.emplace_back("user", "", "", user_field);
        auto r = c->request("POST", "/v1/files/upload", bearer(keys::chat, "multipart/form-data; boundary=BB"),
                            multipart_body("BB", parts));
        EXPECT_EQ(r.status, 201) << r.body;
        return std::string(r.json().at("created_by").as_string());
    };
    auto anon1 = upload(""), anon2 = upload(""), alice = upload("alice"), alice2 = upload("alice");
    EXPECT_EQ(anon1, anon2) << "everyone without a user is the same DEFAULT-USER";
    EXPECT_EQ(alice, alice2);
    EXPECT_NE(anon1, alice);
    auto recent = emu.stats().at("recent_requests").as_array();
    EXPECT_EQ(recent[2].at("user"), "alice");
    EXPECT_EQ(recent[2].at("user_source"), "form");
    auto eu = get(*c, "/v1/end-users/" + anon1, keys::chat).json();
    EXPECT_EQ(eu.at("session_id"), "DEFAULT-USER");
}

TEST_F(EmulatorApi, BlockingChatRemembersTheConversation)
{
    auto first = chat("What is the refund policy?", "user-123");
    EXPECT_EQ(first.at("event"), "message");
    EXPECT_EQ(first.at("mode"), "chat");
    EXPECT_EQ(first.at("id"), first.at("message_id"));
    EXPECT_EQ(first.at("answer"), "Turn 1. You said: \"What is the refund policy?\".");
    const auto& usage = first.at("metadata").at("usage");
    EXPECT_TRUE(usage.at("total_price").is_double()) << "blocking replies carry numeric prices";
    EXPECT_EQ(usage.at("total_tokens").as_int64(), usage.at("prompt_tokens").as_int64() + usage.at("completion_tokens").as_int64());
    std::string conv(first.at("conversation_id").as_string());

    auto second = chat("What about international orders?", "user-123", conv);
    EXPECT_EQ(second.at("conversation_id"), json::value(conv));
    EXPECT_EQ(second.at("answer"),
              "Turn 2. You said: \"What about international orders?\". Earlier you said: \"What is the refund policy?\".");

    // Another user cannot see or continue it.
    auto r = post_json(*c, "/v1/chat-messages", keys::chat, chat_body("hi", "mallory", "blocking", conv));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.json(), json::parse(R"({"code":"not_found","message":"Conversation Not Exists.","status":404})"));
}

TEST_F(EmulatorApi, BlockingRepliesUsePythonJsonStyle)
{
    auto r = post_json(*c, "/v1/chat-messages", keys::chat, chat_body("héllo", "u"));
    EXPECT_EQ(r.header("content-type"), "application/json; charset=utf-8");
    EXPECT_EQ(r.body.rfind("{\"event\": \"message\", \"task_id\": ", 0), 0u) << r.body;
    EXPECT_NE(r.body.find("h\\u00e9llo"), std::string::npos) << "ensure_ascii";
}

TEST_F(EmulatorApi, ChatValidationErrors)
{
    auto call = [&](json::object body) { return post_json(*c, "/v1/chat-messages", keys::chat, body).json(); };
    auto r = call({{"inputs", json::object()}, {"user", "u"}});
    EXPECT_EQ(r.at("code"), "invalid_param");
    EXPECT_EQ(std::string(r.at("message").as_string()).substr(0, 39), "1 validation error for ChatRequestPaylo");
    EXPECT_NE(std::string(r.at("message").as_string()).find("query\n  Field required [type=missing]"), std::string::npos);
    r = call({{"query", "x"}, {"user", "u"}});
    EXPECT_NE(std::string(r.at("message").as_string()).find("inputs\n  Field required"), std::string::npos);
    EXPECT_EQ(call(chat_body("", "u")).at("message"), "query is required");
    auto b = chat_body("x", "u");
    b["response_mode"] = "fast";
    EXPECT_NE(std::string(call(b).at("message").as_string()).find("Input should be 'blocking' or 'streaming'"), std::string::npos);
    b = chat_body("x", "u", "blocking", "not-a-uuid");
    EXPECT_NE(std::string(call(b).at("message").as_string()).find("conversation_id must be a valid UUID"), std::string::npos);
    b = chat_body("x", "u", "blocking", "00000000-0000-4000-8000-000000000000");
    EXPECT_EQ(call(b).at("message"), "Conversation Not Exists.");
    b = chat_body("x", "u");
    b["inputs"] = json::object{{"persona", std::string(49, 'p')}};
    EXPECT_EQ(call(b).at("message"), "persona in input form must be less than 48 characters");
}

TEST_F(EmulatorApi, WrongAppTypeForTheRoute)
{
    auto r = post_json(*c, "/v1/chat-messages", keys::completion, chat_body("x", "u"));
    EXPECT_EQ(r.json().at("code"), "not_chat_app");
    r = post_json(*c, "/v1/completion-messages", keys::chat, json::object{{"inputs", json::object()}, {"user", "u"}});
    EXPECT_EQ(r.json().at("code"), "app_unavailable");
    r = post_json(*c, "/v1/workflows/run", keys::chat, json::object{{"inputs", json::object()}, {"user", "u"}});
    EXPECT_EQ(r.json().at("code"), "not_workflow_app");
    r = get(*c, "/v1/conversations?user=u", keys::workflow);
    EXPECT_EQ(r.json().at("code"), "not_chat_app");
    r = post_json(*c, "/v1/chat-messages", keys::agent, chat_body("x", "u"));
    EXPECT_EQ(r.json().at("message"), "Agent Chat App does not support blocking mode");
}

TEST_F(EmulatorApi, CompletionBlockingHasNoConversationId)
{
    auto r = post_json(*c, "/v1/completion-messages", keys::completion,
                       json::object{{"inputs", json::object{{"topic", "tea"}}}, {"query", "write"}, {"user", "u"}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto o = r.json().as_object();
    EXPECT_EQ(o.at("mode"), "completion");
    EXPECT_FALSE(o.contains("conversation_id"));
    EXPECT_EQ(o.at("answer"), "Completion for \"write\". Inputs: topic=tea.");
}

TEST_F(EmulatorApi, WorkflowBlockingRunAndLookup)
{
    auto r = post_json(*c, "/v1/workflows/run", keys::workflow,
                       json::object{{"inputs", json::object{{"document_url", "https://example.com/c.pdf"}}},
                                    {"response_mode", "blocking"}, {"user", "user-123"}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto o = r.json().as_object();
    EXPECT_EQ(r.body.rfind("{\"task_id\": ", 0), 0u) << "task_id first";
    const auto& data = o.at("data").as_object();
    EXPECT_EQ(data.at("status"), "succeeded");
    EXPECT_EQ(data.at("outputs").at("summary"), "Workflow summary of document_url=https://example.com/c.pdf.");
    std::string run_id(o.at("workflow_run_id").as_string());

    auto d = get(*c, "/v1/workflows/run/" + run_id, keys::workflow).json();
    EXPECT_TRUE(d.at("inputs").is_string()) << "Dify returns inputs JSON-encoded";
    EXPECT_EQ(json::parse(d.at("inputs").as_string()).at("document_url"), "https://example.com/c.pdf");
    EXPECT_EQ(d.at("outputs").at("summary"), data.at("outputs").at("summary"));
    EXPECT_EQ(get(*c, "/v1/workflows/run/" + run_id, keys::chatflow).status, 404) << "scoped to the key's app";
    EXPECT_EQ(get(*c, "/v1/workflows/run/nope", keys::workflow).json().at("message"), "Workflow run not found.");

    auto logs = get(*c, "/v1/workflows/logs?limit=5", keys::workflow).json();
    EXPECT_EQ(logs.at("total"), 1);
    EXPECT_EQ(logs.at("data").at(0).at("created_by_end_user").at("session_id"), "user-123");

    auto body = json::object{{"inputs", json::object()}, {"user", "u"}};
    EXPECT_EQ(post_json(*c, "/v1/workflows/bad/run", keys::workflow, body).json().at("code"), "bad_request");
    r = post_json(*c, "/v1/workflows/00000000-0000-4000-8000-000000000000/run", keys::workflow, body);
    EXPECT_EQ(r.status, 404);
    auto version = std::string(d.at("workflow_id").as_string());
    EXPECT_EQ(post_json(*c, "/v1/workflows/" + version + "/run", keys::workflow, body).status, 200);
}

TEST_F(EmulatorApi, ConversationsMessagesAndVariables)
{
    auto a = chat("first question", "u1");
    std::string conv(a.at("conversation_id").as_string());
    chat("second question", "u1", conv);
    auto b = chat("other conversation", "u1");
    chat("not yours", "u2");

    auto list = get(*c, "/v1/conversations?user=u1&limit=1", keys::chat).json();
    EXPECT_EQ(list.at("limit"), 1);
    EXPECT_EQ(list.at("has_more"), true);
    ASSERT_EQ(list.at("data").as_array().size(), 1u);
    auto all = get(*c, "/v1/conversations?user=u1", keys::chat).json().at("data").as_array();
    EXPECT_EQ(all.size(), 2u) << "only u1's conversations";
    EXPECT_EQ(all[0].at("name"), "other conversation") << "most recently updated first";
    EXPECT_EQ(all[1].at("name"), "first question");
    auto oldest_first = get(*c, "/v1/conversations?user=u1&sort_by=created_at", keys::chat).json().at("data").as_array();
    EXPECT_EQ(oldest_first[0].at("name"), "first question");
    EXPECT_EQ(get(*c, "/v1/conversations?user=u1&last_id=zzz", keys::chat).json().at("message"), "Last Conversation Not Exists.");
    EXPECT_EQ(get(*c, "/v1/conversations?user=u1&limit=101", keys::chat).status, 400);

    auto msgs = get(*c, "/v1/messages?user=u1&conversation_id=" + conv, keys::chat).json();
    ASSERT_EQ(msgs.at("data").as_array().size(), 2u);
    EXPECT_EQ(msgs.at("data").at(0).at("query"), "first question") << "chronological order";
    auto older = get(*c, "/v1/messages?user=u1&limit=1&conversation_id=" + conv, keys::chat).json();
    EXPECT_EQ(older.at("has_more"), true);
    EXPECT_EQ(older.at("data").at(0).at("query"), "second question") << "newest page first";
    EXPECT_EQ(get(*c, "/v1/messages?user=u2&conversation_id=" + conv, keys::chat).status, 404);
    EXPECT_EQ(get(*c, "/v1/messages?user=u1", keys::chat).json().at("data").as_array().size(), 0u);

    auto rename = post_json(*c, "/v1/conversations/" + conv + "/name", keys::chat, json::object{{"name", "Refunds"}, {"user", "u1"}});
    EXPECT_EQ(rename.json().at("name"), "Refunds");
    EXPECT_EQ(post_json(*c, "/v1/conversations/" + conv + "/name", keys::chat, json::object{{"user", "u1"}}).json().at("message"),
              "name is required when auto_generate is false");
    auto gen = post_json(*c, "/v1/conversations/" + conv + "/name", keys::chat, json::object{{"auto_generate", true}, {"user", "u1"}});
    EXPECT_EQ(gen.json().at("name"), "About: first question");

    auto vars = get(*c, "/v1/conversations/" + conv + "/variables?user=u1", keys::chat).json();
    std::string var_id(vars.at("data").at(0).at("id").as_string());
    auto put = c->request("PUT", "/v1/conversations/" + conv + "/variables/" + var_id, bearer(keys::chat),
                          R"({"value": "remember me", "user": "u1"})");
    EXPECT_EQ(put.json().at("value"), "remember me");
    put = c->request("PUT", "/v1/conversations/" + conv + "/variables/" + var_id, bearer(keys::chat), R"({"value": 5, "user": "u1"})");
    EXPECT_EQ(put.json().at("code"), "bad_request");
    put = c->request("PUT", "/v1/conversations/" + conv + "/variables/nope", bearer(keys::chat), R"({"value": "x", "user": "u1"})");
    EXPECT_EQ(put.json().at("message"), "Conversation Variable Not Exists.");

    auto del = c->request("DELETE", "/v1/conversations/" + conv, bearer(keys::chat), R"({"user": "u2"})");
    EXPECT_EQ(del.status, 404) << "another user's conversation";
    del = c->request("DELETE", "/v1/conversations/" + conv, bearer(keys::chat), R"({"user": "u1"})");
    EXPECT_EQ(del.status, 204);
    EXPECT_EQ(del.body, "");
    del = c->request("DELETE", "/v1/conversations/" + conv, bearer(keys::chat), R"({"user": "u1"})");
    EXPECT_EQ(del.status, 404);
    (void)b;
}

TEST_F(EmulatorApi, FeedbackAndSuggestions)
{
    auto m = chat("rate me", "u1");
    std::string id(m.at("id").as_string());
    auto fb = [&](json::value rating, const std::string& user) {
        return post_json(*c, "/v1/messages/" + id + "/feedbacks", keys::chat, json::object{{"rating", rating}, {"user", user}});
    };
    EXPECT_EQ(fb(nullptr, "u1").json().at("message"), "rating cannot be None when feedback not exists");
    EXPECT_EQ(fb("like", "u1").json(), json::parse(R"({"result":"success"})"));
    EXPECT_EQ(fb("like", "u2").status, 404) << "message of another user";
    auto feedbacks = get(*c, "/v1/app/feedbacks", keys::chat).json().at("data").as_array();
    ASSERT_EQ(feedbacks.size(), 1u);
    EXPECT_EQ(feedbacks[0].at("rating"), "like");
    EXPECT_EQ(feedbacks[0].at("created_at").as_string().size(), 19u) << "ISO-8601 strings here";
    EXPECT_EQ(fb(nullptr, "u1").status, 200);
    EXPECT_EQ(get(*c, "/v1/app/feedbacks", keys::chat).json().at("data").as_array().size(), 0u);

    auto s = get(*c, "/v1/messages/" + id + "/suggested?user=u1", keys::chat).json();
    EXPECT_EQ(s.at("result"), "success");
    EXPECT_EQ(s.at("data").as_array().size(), 3u);
    EXPECT_EQ(get(*c, "/v1/messages/" + id + "/suggested?user=u2", keys::chat).status, 404);
}

TEST_F(EmulatorApi, FileUploadPreviewAndChatWithFile)
{
    auto up = [&](const std::string& body, const std::string& key = keys::chat) {
        return c->request("POST", "/v1/files/upload", bearer(key, "multipart/form-data; boundary=BB"), body);
    };
    auto r = up(multipart_body("BB", {{"file", "contract.pdf", "application/pdf", "%PDF-1.4 contract"}, {"user", "", "", "user-123"}}));
    ASSERT_EQ(r.status, 201) << r.body;
    auto f = r.json().as_object();
    EXPECT_EQ(f.at("name"), "contract.pdf");
    EXPECT_EQ(f.at("size"), 17);
    EXPECT_EQ(f.at("extension"), "pdf");
    EXPECT_EQ(f.at("mime_type"), "application/pdf");
    EXPECT_TRUE(f.at("source_url").as_string().starts_with("/files/"));
    std::string file_id(f.at("id").as_string());

    // Not referenced by any message yet: preview is 404; another app: 403.
    EXPECT_EQ(get(*c, "/v1/files/" + file_id + "/preview", keys::chat).json().at("code"), "file_not_found");
    EXPECT_EQ(get(*c, "/v1/files/" + file_id + "/preview", keys::completion).json().at("code"), "file_access_denied");

    auto body = chat_body("Summarise this contract", "user-123");
    body["files"] = json::array{json::object{{"type", "document"}, {"transfer_method", "local_file"}, {"upload_file_id", file_id}}};
    auto answer = post_json(*c, "/v1/chat-messages", keys::chat, body).json();
    EXPECT_NE(std::string(answer.at("answer").as_string()).find("Files: contract.pdf (17 bytes)."), std::string::npos);

    auto p = get(*c, "/v1/files/" + file_id + "/preview", keys::chat);
    EXPECT_EQ(p.status, 200);
    EXPECT_EQ(p.body, "%PDF-1.4 contract");
    EXPECT_EQ(p.header("content-type"), "application/pdf");
    EXPECT_EQ(p.header("cache-control"), "public, max-age=3600");
    p = get(*c, "/v1/files/" + file_id + "/preview?as_attachment=true", keys::chat);
    EXPECT_EQ(p.header("content-type"), "application/octet-stream");
    EXPECT_EQ(p.header("content-disposition"), "attachment; filename*=UTF-8''contract.pdf");

    body["files"] = json::array{json::object{{"type", "document"}, {"transfer_method", "local_file"}, {"upload_file_id", "x"}}};
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", keys::chat, body).json().at("message"), "Invalid upload file id format");

    // Upload errors.
    EXPECT_EQ(up(multipart_body("BB", {{"user", "", "", "u"}})).json().at("code"), "no_file_uploaded");
    EXPECT_EQ(up("garbage").json().at("code"), "no_file_uploaded");
    EXPECT_EQ(up(multipart_body("BB", {{"file", "a.txt", "text/plain", "1"}, {"file", "b.txt", "text/plain", "2"}})).json().at("code"),
              "too_many_files");
    EXPECT_EQ(up("--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--BB--\r\n")
                  .json().at("code"), "filename_not_exists_error");
    r = up(multipart_body("BB", {{"file", "a.txt", "", "x"}}));
    EXPECT_EQ(r.status, 415);
    EXPECT_EQ(r.json().at("code"), "unsupported_file_type");
    r = up(multipart_body("BB", {{"file", "big.png", "image/png", std::string(10 * 1024 * 1024 + 1, 'x')}}));
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(r.json().at("message"), "File size exceeded. {message}");
    EXPECT_EQ(up(multipart_body("BB", {{"file", "big.txt", "text/plain", std::string(10 * 1024 * 1024 + 1, 'x')}})).status, 201)
        << "documents may be up to 15 MB";
}

TEST_F(EmulatorApi, AudioBothWays)
{
    auto stt = [&](const std::string& body) {
        return c->request("POST", "/v1/audio-to-text", bearer(keys::chat, "multipart/form-data; boundary=BB"), body);
    };
    auto r = stt(multipart_body("BB", {{"file", "note.wav", "audio/wav", "RIFF...."}, {"user", "", "", "u"}}));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("text"), "Transcript of note.wav (8 bytes).");
    r = stt(multipart_body("BB", {{"file", "note.mp3", "audio/mpeg", "ID3"}}));
    EXPECT_EQ(r.status, 415) << "audio/mpeg is rejected, as in Dify";
    EXPECT_EQ(r.json().at("code"), "unsupported_audio_type");
    EXPECT_EQ(stt(multipart_body("BB", {{"user", "", "", "u"}})).json().at("code"), "bad_request_key_error");

    auto m = chat("speak", "u");
    r = post_json(*c, "/v1/text-to-audio", keys::chat, json::object{{"text", "Hello world"}, {"user", "u"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), "audio/mpeg");
    EXPECT_EQ(r.body.substr(0, 3), "ID3");
    EXPECT_EQ(r.body.size(), 10u + 4 + 32);
    r = post_json(*c, "/v1/text-to-audio", keys::chat, json::object{{"message_id", m.at("id")}, {"user", "u"}});
    EXPECT_EQ(r.header("content-type"), "audio/mpeg");
    r = post_json(*c, "/v1/text-to-audio", keys::chat, json::object{{"message_id", "unknown"}, {"user", "u"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "null\n");
    EXPECT_EQ(post_json(*c, "/v1/text-to-audio", keys::chat, json::object{{"user", "u"}}).json().at("message"), "Text is required");
}

TEST_F(EmulatorApi, AppInfoEndpoints)
{
    auto info = get(*c, "/v1/info", keys::workflow).json();
    EXPECT_EQ(info.at("name"), "Emulator Workflow");
    EXPECT_EQ(info.at("mode"), "workflow");
    auto params = get(*c, "/v1/parameters", keys::chat).json();
    EXPECT_EQ(params.at("user_input_form").at(0).at("text-input").at("variable"), "persona");
    EXPECT_EQ(params.at("system_parameters").at("file_size_limit"), 15);
    EXPECT_TRUE(get(*c, "/v1/meta", keys::chat).json().as_object().contains("tool_icons"));
    EXPECT_EQ(get(*c, "/v1/site", keys::chat).json().at("title"), "Emulator Chatbot");
}

TEST(EmulatorApps, CustomAppsDisabledApiRequiredInputsAndSwitchedOffFeatures)
{
    auto apps = emulator::parse_apps(R"([
      {"key": "app-customchat00000000000001", "mode": "chat", "name": "Off", "enable_api": false},
      {"key": "app-customchat00000000000002", "mode": "chat", "name": "Strict", "speech_to_text": false,
       "text_to_speech": false, "suggested_questions": false,
       "inputs": [{"variable": "lang", "type": "select", "required": true, "options": ["en", "de"]},
                  {"variable": "n", "type": "number"}]}
    ])");
    running_emulator emu({}, true, apps);
    auto c = emu.client();
    auto r = get(*c, "/v1/info", "app-customchat00000000000001");
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.json().at("message"), "The app's API service has been disabled.");
    const std::string k = "app-customchat00000000000002";
    auto body = chat_body("x", "u");
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", k, body).json().at("message"), "lang is required in input form");
    body["inputs"] = json::object{{"lang", "fr"}};
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", k, body).json().at("message"),
              "lang in input form must be one of the following: ['en', 'de']");
    body["inputs"] = json::object{{"lang", "en"}, {"n", "seven"}};
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", k, body).json().at("message"), "n in input form must be a valid number");
    body["inputs"] = json::object{{"lang", "en"}, {"n", "7"}};
    auto m = post_json(*c, "/v1/chat-messages", k, body).json();
    EXPECT_EQ(m.at("answer"), "Turn 1. You said: \"x\". Inputs: lang=en, n=7.");
    EXPECT_EQ(get(*c, "/v1/messages/" + std::string(m.at("id").as_string()) + "/suggested?user=u", k).json().at("message"),
              "Suggested Questions Is Disabled.");
    EXPECT_EQ(post_json(*c, "/v1/text-to-audio", k, json::object{{"text", "x"}}).json().at("message"), "TTS is not enabled");
    auto stt = c->request("POST", "/v1/audio-to-text", bearer(k, "multipart/form-data; boundary=BB"),
                          multipart_body("BB", {{"file", "a.wav", "audio/wav", "x"}}));
    EXPECT_EQ(stt.json().at("message"), "Speech to text is not enabled");
}

TEST(EmulatorApps, BadAppFilesAreRejectedWithEveryProblem)
{
    try {
        emulator::parse_apps(R"([{"key": "nope", "mode": "robot", "name": "x", "extra": 1}, {"mode": "chat", "name": "y"}])");
        FAIL() << "expected an exception";
    } catch (const std::runtime_error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("apps[0].key: must be app- followed by 24 letters or digits"), std::string::npos) << msg;
        EXPECT_NE(msg.find("apps[0].mode: must be chat, agent-chat, advanced-chat, workflow or completion"), std::string::npos);
        EXPECT_NE(msg.find("apps[0].extra: unknown key"), std::string::npos);
        EXPECT_NE(msg.find("apps[1].key: is required"), std::string::npos);
    }
    EXPECT_THROW(emulator::parse_apps("{}"), std::runtime_error);
    EXPECT_THROW(emulator::parse_apps("[]"), std::runtime_error);
    EXPECT_THROW(emulator::parse_apps("[,"), std::runtime_error);
}

} // namespace
} // namespace gw::test
