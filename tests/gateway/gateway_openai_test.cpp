// The OpenAI-compatible front end to end: models, blocking and streaming completions, a
// conversation continued across turns that resend their history, tenants kept apart, an
// edited history, workflow apps, usage, and OpenAI's errors.
#include "tests/emulator/emulator_test_util.hpp"
#include "tests/support/gateway_fixture.hpp"

#include <cctype>
#include <chrono>
#include <gtest/gtest.h>
#include <set>
#include <thread>

namespace gw::test {
namespace {

json::object user_turn(const std::string& text)
{
    return json::object{{"role", "user"}, {"content", text}};
}

http_response
complete(http_client& c, const std::string& key, const json::object& body, header_list extra = {})
{
    auto h = bearer(key);
    for (auto& e : extra)
        h.push_back(std::move(e));
    return c.request("POST", "/openai/v1/chat/completions", h, json::serialize(body));
}

json::object
chat_request(const json::array& messages, const std::string& user = "u1", const std::string& model = "chat")
{
    return json::object{{"model", model}, {"messages", messages}, {"user", user}};
}

std::string answer_of(const http_response& r)
{
    return std::string(r.json().at("choices").at(0).at("message").at("content").as_string());
}

TEST(GatewayOpenAi, ModelsAreTheTenantsApps)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto r = get(*c, "/openai/v1/models", tenant_keys::beta);
    ASSERT_EQ(r.status, 200) << r.body;
    std::set<std::string> ids;
    const auto doc = r.json();
    for (const auto& m : doc.at("data").as_array())
        ids.insert(std::string(m.at("id").as_string()));
    EXPECT_EQ(ids, (std::set<std::string>{"chat", "workflow"}));
    EXPECT_EQ(r.json().at("object"), "list");
}

TEST(GatewayOpenAi, ABlockingCompletionWithDifysUsage)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto r = complete(*c, tenant_keys::alpha, chat_request({user_turn("Hello there")}));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json().at("object"), "chat.completion");
    EXPECT_EQ(r.json().at("model"), "chat");
    EXPECT_EQ(answer_of(r), "Turn 1. You said: \"Hello there\".");
    EXPECT_EQ(r.json().at("choices").at(0).at("finish_reason"), "stop");
    const auto reply = r.json();
    const auto& usage = reply.at("usage");
    EXPECT_GT(usage.at("prompt_tokens").as_int64(), 0);
    EXPECT_EQ(
        usage.at("total_tokens").as_int64(),
        usage.at("prompt_tokens").as_int64() + usage.at("completion_tokens").as_int64()
    );
    EXPECT_FALSE(r.header("x-dify-conversation-id").empty());
    // The Dify call the turn became: the app's key, the user namespaced.
    auto seen =
        wait_for_request(emu, [](const json::value& s) { return s.at("path") == "/v1/chat-messages"; });
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->at("user"), "alpha:u1");
    EXPECT_EQ(seen->at("app_key"), json::value(keys::chat));
    http_client admin(gw.server().admin_endpoint(), false);
    auto charged = [&] {
        return admin.request("GET", "/admin/usage")
            .json()
            .at("tenants")
            .at("alpha")
            .at("apps")
            .at("chat")
            .at("tokens_today");
    };
    for (int i = 0; i < 200 && charged() != usage.at("total_tokens");
         ++i) // settled just after the reply went out
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(charged(), usage.at("total_tokens")) << "the quota is charged what Dify reported";
}

TEST(GatewayOpenAi, AStreamOfChunksThenUsageThenDone)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto body = chat_request({user_turn("one two three four")});
    body["stream"] = true;
    body["stream_options"] = json::object{{"include_usage", true}};
    auto r = complete(*c, tenant_keys::alpha, body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.header("content-type").find("text/event-stream"), std::string::npos);
    // The head waited for Dify's first event: it names the new conversation.
    const auto conversation = r.header("x-dify-conversation-id");
    ASSERT_EQ(conversation.size(), 36u) << r.body;
    std::vector<std::string> datas;
    for (const auto& f : sse_frames(r.body))
        datas.push_back(f.substr(std::string("data: ").size()));
    ASSERT_GE(datas.size(), 4u) << r.body;
    EXPECT_EQ(datas.back(), "[DONE]");
    auto first = json::parse(datas.front());
    EXPECT_EQ(first.at("choices").at(0).at("delta").at("role"), "assistant");
    std::string text;
    for (std::size_t i = 0; i + 2 < datas.size(); ++i) {
        auto chunk = json::parse(datas[i]);
        EXPECT_EQ(chunk.at("object"), "chat.completion.chunk");
        if (auto* content = chunk.at("choices").at(0).at("delta").as_object().if_contains("content"))
            text += content->as_string();
    }
    EXPECT_EQ(text, "Turn 1. You said: \"one two three four\".");
    auto usage = json::parse(datas[datas.size() - 2]);
    EXPECT_EQ(usage.at("choices").as_array().size(), 0u);
    EXPECT_GT(usage.at("usage").at("total_tokens").as_int64(), 0);
    // The id named in the head is the conversation's: pinned, the next turn continues it.
    auto next = complete(*c, tenant_keys::alpha, chat_request({user_turn("and then?")}), {{"X-Dify-Conversation-Id", conversation}});
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(answer_of(next).rfind("Turn 2.", 0), 0u) << next.body;
}

TEST(GatewayOpenAi, FiveTurnsResendingTheHistoryAreOneDifyConversation)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    json::array history{json::object{{"role", "system"}, {"content", "Be brief."}}};
    std::set<std::string> conversations;
    for (int turn = 1; turn <= 5; ++turn) {
        const std::string said = "question " + std::to_string(turn);
        history.push_back(user_turn(said));
        auto r = complete(*c, tenant_keys::alpha, chat_request(history));
        ASSERT_EQ(r.status, 200) << r.body;
        const auto answer = answer_of(r);
        std::string expected = "Turn " + std::to_string(turn) + ". You said: \"" + said + "\".";
        if (turn > 1) expected += " Earlier you said: \"question " + std::to_string(turn - 1) + "\".";
        EXPECT_EQ(answer, expected) << "Dify got only the newest message, in the same conversation";
        conversations.insert(r.header("x-dify-conversation-id"));
        history.push_back(json::object{{"role", "assistant"}, {"content", answer}});
    }
    EXPECT_EQ(conversations.size(), 1u);

    // The same user name under another tenant is another end user: its own conversation.
    auto other = complete(*c, tenant_keys::beta, chat_request({user_turn("question 1")}));
    ASSERT_EQ(other.status, 200) << other.body;
    EXPECT_EQ(answer_of(other), "Turn 1. You said: \"question 1\".");
    EXPECT_FALSE(conversations.contains(other.header("x-dify-conversation-id")));

    // An edited history is one the gateway has not seen: a new conversation, the earlier
    // turns given to Dify as context.
    json::array edited{
        user_turn("question 1"), json::object{{"role", "assistant"}, {"content", "something else"}},
        user_turn("and now?")};
    auto fresh = complete(*c, tenant_keys::alpha, chat_request(edited));
    ASSERT_EQ(fresh.status, 200) << fresh.body;
    EXPECT_FALSE(conversations.contains(fresh.header("x-dify-conversation-id")));
    EXPECT_NE(answer_of(fresh).find("Turn 1."), std::string::npos);
    EXPECT_NE(answer_of(fresh).find("assistant: something else"), std::string::npos) << answer_of(fresh);
}

TEST(GatewayOpenAi, AHistoryWhoseConversationWasDeletedStartsANewOne)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    json::array history{user_turn("remember me")};
    auto first = complete(*c, tenant_keys::alpha, chat_request(history));
    ASSERT_EQ(first.status, 200) << first.body;
    const auto id = first.header("x-dify-conversation-id");
    auto deleted =
        c->request("DELETE", "/v1/conversations/" + id, bearer(tenant_keys::alpha), R"({"user": "u1"})");
    ASSERT_EQ(deleted.status, 204) << deleted.body;

    history.push_back(json::object{{"role", "assistant"}, {"content", answer_of(first)}});
    history.push_back(user_turn("still there?"));
    auto next = complete(*c, tenant_keys::alpha, chat_request(history));
    ASSERT_EQ(next.status, 200) << "Dify's 404 for the remembered conversation is not the client's: " << next.body;
    EXPECT_NE(next.header("x-dify-conversation-id"), id);
    EXPECT_EQ(answer_of(next).rfind("Turn 1.", 0), 0u) << answer_of(next);
    EXPECT_NE(answer_of(next).find("user: remember me"), std::string::npos) << "earlier turns as context";
    // A pinned conversation that is gone is the client's to hear about.
    auto pinned = complete(*c, tenant_keys::alpha, chat_request({user_turn("hello?")}), {{"X-Dify-Conversation-Id", id}});
    EXPECT_EQ(pinned.status, 404) << pinned.body;
}

TEST(GatewayOpenAi, DataUrlImagesAreUploadedToDifyFirst)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    json::array parts{
        json::object{{"type", "text"}, {"text", "what is in these?"}},
        json::object{{"type", "image_url"}, {"image_url", json::object{{"url", "https://example.com/cat.png"}}}},
        json::object{{"type", "image_url"}, {"image_url", json::object{{"url", "data:image/png;base64,iVBORw0KGgo="}}}}};
    auto r = complete(*c, tenant_keys::alpha, chat_request({json::object{{"role", "user"}, {"content", parts}}}));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_NE(answer_of(r).find("Files: image-1.png (8 bytes)"), std::string::npos) << answer_of(r);
    auto upload =
        wait_for_request(emu, [](const json::value& s) { return s.at("path") == "/v1/files/upload"; });
    ASSERT_TRUE(upload);
    EXPECT_EQ(upload->at("user"), "alpha:u1") << "uploaded as the turn's end user";
    // A malformed data: URL never reaches Dify.
    json::array bad{json::object{{"type", "image_url"}, {"image_url", json::object{{"url", "data:image/png;base64,@@"}}}}};
    auto refused = complete(*c, tenant_keys::alpha, chat_request({json::object{{"role", "user"}, {"content", bad}}}));
    EXPECT_EQ(refused.status, 400);
    EXPECT_EQ(refused.json().at("error").at("code"), "invalid_image_url");
}

TEST(GatewayOpenAi, AConversationOfAnotherTenantCannotBePinned)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto mine = complete(*c, tenant_keys::alpha, chat_request({user_turn("private")}));
    ASSERT_EQ(mine.status, 200);
    const auto id = mine.header("x-dify-conversation-id");
    auto pinned = complete(
        *c, tenant_keys::alpha, chat_request({user_turn("again")}), {{"X-Dify-Conversation-Id", id}}
    );
    ASSERT_EQ(pinned.status, 200) << pinned.body;
    EXPECT_NE(answer_of(pinned).find("Turn 2."), std::string::npos) << "the pinned conversation continued";
    auto stolen = complete(
        *c, tenant_keys::beta, chat_request({user_turn("let me in")}), {{"X-Dify-Conversation-Id", id}}
    );
    EXPECT_EQ(stolen.status, 404) << stolen.body;
    EXPECT_TRUE(stolen.json().at("error").is_object()) << "OpenAI's error shape";
}

TEST(GatewayOpenAi, TwoChatsThatReachTheSameHistoryContinueNeither)
{
    // Two clients of one end user (no `user` sent) ask the same first question and get the
    // same answer: that history now names two conversations, so it continues neither.
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto ask = [&](const json::array& messages) {
        return complete(*c, tenant_keys::alpha, json::object{{"model", "chat"}, {"messages", messages}});
    };
    auto a = ask({user_turn("hi")});
    auto b = ask({user_turn("hi")});
    ASSERT_EQ(a.status, 200);
    ASSERT_EQ(answer_of(a), answer_of(b));
    EXPECT_NE(a.header("x-dify-conversation-id"), b.header("x-dify-conversation-id"));
    json::array history{
        user_turn("hi"), json::object{{"role", "assistant"}, {"content", answer_of(a)}},
        user_turn("my card PIN is 4321")};
    auto next = ask(history);
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_NE(answer_of(next).find("Turn 1."), std::string::npos)
        << "a new conversation: " << answer_of(next);
    EXPECT_NE(next.header("x-dify-conversation-id"), b.header("x-dify-conversation-id"));
}

TEST(GatewayOpenAi, APinnedConversationIsACanonicalUuidAndStreamsCarryOnlyTheGatewaysHeaders)
{
    running_emulator emu;
    running_gateway gw(emu);
    auto c = gw.client();
    auto first = complete(*c, tenant_keys::alpha, chat_request({user_turn("pin me")}));
    ASSERT_EQ(first.status, 200);
    std::string id = first.header("x-dify-conversation-id");
    for (auto spelling :
         {"{" + id + "}", "urn:uuid:" + id, "\xc2\xa0" + id, id.substr(0, 8) + id.substr(9),
          std::string("x")}) {
        auto r = complete(
            *c, tenant_keys::alpha, chat_request({user_turn("again")}), {{"X-Dify-Conversation-Id", spelling}}
        );
        EXPECT_EQ(r.status, 400) << spelling;
        EXPECT_EQ(r.json().at("error").at("code"), "invalid_conversation_id");
    }
    std::string upper = id;
    for (auto& ch : upper)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    auto pinned = complete(
        *c, tenant_keys::alpha, chat_request({user_turn("again")}), {{"X-Dify-Conversation-Id", upper}}
    );
    ASSERT_EQ(pinned.status, 200) << pinned.body;
    EXPECT_NE(answer_of(pinned).find("Turn 2."), std::string::npos);

    auto body = chat_request({user_turn("stream")});
    body["stream"] = true;
    auto s = complete(*c, tenant_keys::alpha, body);
    ASSERT_EQ(s.status, 200);
    EXPECT_EQ(s.header("x-version"), "") << "Dify's own headers stay behind the gateway";
    EXPECT_NE(s.header("content-type").find("text/event-stream"), std::string::npos);
}

TEST(GatewayOpenAi, AWorkflowAppThroughTheFront)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.apps["workflow"].openai.type = config::openai_app_kind::workflow;
        c.apps["workflow"].openai.text_input = "topic";
        c.apps["workflow"].openai.output = "summary";
    });
    auto c = gw.client();
    auto r = complete(*c, tenant_keys::alpha, chat_request({user_turn("heat pumps")}, "u1", "workflow"));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(answer_of(r), "Workflow summary of topic=heat pumps.");
    EXPECT_GT(r.json().at("usage").at("total_tokens").as_int64(), 0) << "Dify's total for the run";
}

TEST(GatewayOpenAi, ErrorsInOpenAisShape)
{
    running_emulator emu;
    running_gateway gw(emu, [](config::gateway_config& c) {
        c.tenants["beta"].rate = config::rate_config{0.001, 1};
    });
    auto c = gw.client();
    auto bad_key = complete(*c, "sk-not-a-key", chat_request({user_turn("hi")}));
    EXPECT_EQ(bad_key.status, 401);
    EXPECT_EQ(bad_key.json().at("error").at("code"), "invalid_api_key");

    auto no_model = complete(*c, tenant_keys::beta, chat_request({user_turn("hi")}, "u1", "agent"));
    EXPECT_EQ(no_model.status, 404) << "beta may not use agent: not named";
    EXPECT_EQ(no_model.json().at("error").at("code"), "model_not_found");

    auto malformed =
        c->request("POST", "/openai/v1/chat/completions", bearer(tenant_keys::beta), "{\"model\": \"chat\"}");
    EXPECT_EQ(malformed.status, 400);
    EXPECT_EQ(malformed.json().at("error").at("param"), "messages");
    EXPECT_EQ(malformed.json().at("error").at("type"), "invalid_request_error");

    EXPECT_EQ(complete(*c, tenant_keys::beta, chat_request({user_turn("first")})).status, 200);
    auto limited = complete(*c, tenant_keys::beta, chat_request({user_turn("second")}));
    EXPECT_EQ(limited.status, 429);
    EXPECT_EQ(limited.json().at("error").at("code"), "rate_limit_exceeded");
    EXPECT_FALSE(limited.header("retry-after").empty());

    auto wrong_method = c->request("GET", "/openai/v1/chat/completions", bearer(tenant_keys::alpha));
    EXPECT_EQ(wrong_method.status, 405);
    EXPECT_TRUE(wrong_method.json().at("error").is_object());
}

} // namespace
} // namespace gw::test
