// The OpenAI front's sans-io parts: reading a chat completion request (and what each bad
// one gets), conversation digests, the Dify body of a turn, and Dify events turned into
// OpenAI chunks or one completion; data: images and their upload form.
#include "core/conversation_map.hpp"
#include "core/openai_chat.hpp"
#include "core/openai_images.hpp"
#include "core/openai_stream.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

namespace gw::core::openai {
namespace {

namespace json = boost::json;

chat_request parse_ok(std::string_view body)
{
    api_error err;
    auto r = parse_chat_request(body, err);
    EXPECT_TRUE(r) << err.message;
    return r ? *r : chat_request{};
}

api_error parse_bad(std::string_view body)
{
    api_error err;
    EXPECT_FALSE(parse_chat_request(body, err)) << body;
    return err;
}

TEST(OpenAiChat, ReadsTheNewestUserTurnItsImagesAndTheInstructions)
{
    auto r =
        parse_ok(R"({"model": "chat", "stream": true, "stream_options": {"include_usage": true}, "user": "u1",
      "temperature": 0.2, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "this?"},
                                     {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}]})"
        );
    EXPECT_EQ(r.model, "chat");
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.user, "u1");
    EXPECT_EQ(r.newest().text, "What is\nthis?");
    ASSERT_EQ(r.newest().images.size(), 1u);
    EXPECT_EQ(r.newest().images[0], "https://x.example/a.png");
    EXPECT_EQ(r.instructions(), "Be brief.");
    EXPECT_EQ(history_length(r), 3u);
}

TEST(OpenAiChat, WhatEachBadRequestGets)
{
    EXPECT_EQ(parse_bad("not json").message, "The request body must be a JSON object.");
    EXPECT_EQ(parse_bad(R"({"messages": [{"role": "user", "content": "x"}]})").param, "model");
    EXPECT_EQ(parse_bad(R"({"model": "chat", "messages": []})").param, "messages");
    EXPECT_EQ(parse_bad(R"({"model": "chat", "messages": [{"content": "x"}]})").param, "messages[0].role");
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "messages": [{"role": "wizard", "content": "x"}]})").param,
        "messages[0].role"
    );
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "messages": [{"role": "user", "content": 7}]})").param,
        "messages[0].content"
    );
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})"
        )
            .param,
        "messages[0].content[0].type"
    );
    EXPECT_EQ(
        parse_bad(
            R"({"model": "chat", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"
        )
            .param,
        "messages[0].content[0].image_url.url"
    );
    auto last = parse_bad(
        R"({"model": "chat", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})"
    );
    EXPECT_EQ(last.param, "messages");
    EXPECT_EQ(last.status, 400);
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "messages": [{"role": "user", "content": ""}]})").message,
        "The last user message is empty."
    );
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "n": 2, "messages": [{"role": "user", "content": "x"}]})").param, "n"
    );
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "stream": "yes", "messages": [{"role": "user", "content": "x"}]})")
            .param,
        "stream"
    );
    EXPECT_EQ(
        parse_bad(R"({"model": "chat", "user": 5, "messages": [{"role": "user", "content": "x"}]})").param,
        "user"
    );

    auto body =
        json::parse(error_body({404, "invalid_request_error", "model_not_found", "model", "No such model."}));
    EXPECT_EQ(body.at("error").at("code"), "model_not_found");
    EXPECT_EQ(body.at("error").at("param"), "model");
    EXPECT_EQ(body.at("error").at("type"), "invalid_request_error");
    EXPECT_TRUE(json::parse(error_body({500, "server_error", "", "", "x"})).at("error").at("param").is_null()
    );
}

TEST(OpenAiChat, AResentHistoryHasTheDigestTheLastTurnLeft)
{
    auto first = parse_ok(R"({"model": "chat", "messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "Hi"}]})");
    const auto after_first = digest_after_answer(first, "Hello!");
    // The next turn resends the history, the content written as parts this time, the
    // system message changed: still the same conversation.
    auto second = parse_ok(R"({"model": "chat", "messages": [{"role": "system", "content": "Be briefer."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"}]})");
    EXPECT_EQ(history_digest(second.messages, history_length(second)), after_first);

    auto edited = parse_ok(R"({"model": "chat", "messages": [{"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello?"}, {"role": "user", "content": "And now?"}]})");
    EXPECT_NE(history_digest(edited.messages, history_length(edited)), after_first)
        << "an edited answer is another history";
    EXPECT_EQ(prior_turns_as_context(edited), "user: Hi\nassistant: Hello?\n");
}

TEST(OpenAiChat, TheDifyBodyOfATurn)
{
    auto r = parse_ok(
        R"({"model": "chat", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})"
    );
    app_mapping chat;
    chat.instructions_input = "persona";
    auto body = dify_body(r, chat, "alpha:u1", "3f2b9c1e-7d44-4a8b-9e2f-5c6a1b0d8e73", "", {});
    EXPECT_EQ(body.at("query"), "Hi");
    EXPECT_EQ(body.at("user"), "alpha:u1");
    EXPECT_EQ(body.at("response_mode"), "streaming");
    EXPECT_EQ(body.at("conversation_id"), "3f2b9c1e-7d44-4a8b-9e2f-5c6a1b0d8e73");
    EXPECT_EQ(body.at("inputs").at("persona"), "Be brief.");
    EXPECT_FALSE(body.contains("files"));

    app_mapping dropped; // no variable for instructions: they are dropped, and a new conversation has none
    auto fresh = dify_body(
        r, dropped, "alpha:u1", "", "user: earlier\n", json::array{json::object{{"type", "image"}}}
    );
    EXPECT_FALSE(fresh.contains("conversation_id"));
    EXPECT_EQ(fresh.at("inputs").as_object().size(), 0u);
    EXPECT_EQ(fresh.at("query"), "user: earlier\nuser: Hi");
    EXPECT_EQ(fresh.at("files").as_array().size(), 1u);

    app_mapping workflow;
    workflow.app = app_mapping::kind::workflow;
    workflow.text_input = "topic";
    auto run = dify_body(r, workflow, "alpha:u1", "ignored", "", {});
    EXPECT_EQ(run.at("inputs").at("topic"), "Hi");
    EXPECT_FALSE(run.contains("query"));
    EXPECT_FALSE(run.contains("conversation_id")) << "workflows have no conversations";
}

std::vector<json::value> frames_of(const std::string& text)
{
    std::vector<json::value> out;
    std::size_t pos = 0;
    while ((pos = text.find("data: ", pos)) != std::string::npos) {
        auto end = text.find("\n\n", pos);
        auto payload = text.substr(pos + 6, end - pos - 6);
        out.push_back(payload == "[DONE]" ? json::value("[DONE]") : json::parse(payload));
        pos = end + 2;
    }
    return out;
}

completion_translator::options chat_options(bool include_usage = false)
{
    completion_translator::options o;
    o.id = "chatcmpl-1";
    o.created = 1747123456;
    o.model = "chat";
    o.include_usage = include_usage;
    return o;
}

const std::string message_end =
    R"({"event":"message_end","conversation_id":"c1","task_id":"t","id":"m","metadata":{"usage":{"prompt_tokens":42,"completion_tokens":9,"total_tokens":51,"total_price":"0.0000117"}}})";

TEST(OpenAiStream, ChatEventsBecomeChunksThenUsageThenDone)
{
    completion_translator t(chat_options(true));
    std::string out;
    out += t.on_event(R"({"event":"message","conversation_id":"c1","task_id":"t","answer":"Sure"})");
    out += t.on_event(R"({"event":"agent_thought","conversation_id":"c1","thought":"secret plan"})");
    out += t.on_event(R"({"event":"message","conversation_id":"c1","task_id":"t","answer":" thing"})");
    out += t.on_event(message_end);
    out += t.on_end();
    auto f = frames_of(out);
    ASSERT_EQ(f.size(), 5u) << out;
    EXPECT_EQ(f[0].at("object"), "chat.completion.chunk");
    EXPECT_EQ(f[0].at("choices").at(0).at("delta").at("role"), "assistant");
    EXPECT_EQ(f[0].at("choices").at(0).at("delta").at("content"), "Sure");
    EXPECT_TRUE(f[0].at("usage").is_null());
    EXPECT_FALSE(f[1].at("choices").at(0).at("delta").as_object().contains("role"));
    EXPECT_EQ(f[1].at("choices").at(0).at("delta").at("content"), " thing");
    EXPECT_EQ(f[2].at("choices").at(0).at("finish_reason"), "stop");
    EXPECT_EQ(f[3].at("choices").as_array().size(), 0u);
    EXPECT_EQ(f[3].at("usage").at("prompt_tokens"), 42);
    EXPECT_EQ(f[3].at("usage").at("completion_tokens"), 9);
    EXPECT_EQ(f[3].at("usage").at("total_tokens"), 51);
    EXPECT_EQ(f[4], "[DONE]");
    EXPECT_EQ(out.find("secret plan"), std::string::npos) << "agent thoughts are not content";
    EXPECT_EQ(t.answer(), "Sure thing");
    EXPECT_EQ(t.conversation_id(), "c1");
    EXPECT_TRUE(t.finished());
}

TEST(OpenAiStream, ABlockingCallIsAssembledFromTheStream)
{
    auto o = chat_options();
    o.stream = false;
    completion_translator t(o);
    EXPECT_EQ(t.on_event(R"({"event":"agent_message","conversation_id":"c1","answer":"Forty"})"), "");
    EXPECT_EQ(t.on_event(R"({"event":"agent_message","conversation_id":"c1","answer":"-two"})"), "");
    EXPECT_EQ(t.on_event(message_end), "");
    EXPECT_EQ(t.on_end(), "");
    auto c = t.completion();
    EXPECT_EQ(c.at("object"), "chat.completion");
    EXPECT_EQ(c.at("choices").at(0).at("message").at("content"), "Forty-two");
    EXPECT_EQ(c.at("choices").at(0).at("finish_reason"), "stop");
    EXPECT_EQ(c.at("usage").at("total_tokens"), 51);
    EXPECT_FALSE(t.error());
}

TEST(OpenAiStream, ModerationReplacesTheAnswer)
{
    completion_translator t(chat_options());
    t.on_event(R"({"event":"message","answer":"something bad"})");
    auto replaced = frames_of(
        t.on_event(R"({"event":"message_replace","answer":"[removed]","reason":"output_moderation"})")
    );
    ASSERT_EQ(replaced.size(), 1u);
    EXPECT_EQ(replaced[0].at("choices").at(0).at("delta").at("content"), "[removed]");
    t.on_event(message_end);
    auto end = frames_of(t.on_end());
    EXPECT_EQ(end[0].at("choices").at(0).at("finish_reason"), "content_filter");
    EXPECT_EQ(t.answer(), "something bad[removed]") << "what the streamed client holds";

    auto o = chat_options();
    o.stream = false;
    completion_translator blocking(o);
    blocking.on_event(R"({"event":"message","answer":"something bad"})");
    blocking.on_event(R"({"event":"message_replace","answer":"[removed]"})");
    blocking.on_event(message_end);
    blocking.on_end();
    EXPECT_EQ(blocking.completion().at("choices").at(0).at("message").at("content"), "[removed]");
}

TEST(OpenAiStream, WorkflowTextChunksOrItsOutputVariableAndItsTotal)
{
    auto o = chat_options(true);
    o.app = app_mapping::kind::workflow;
    o.output = "summary";
    completion_translator streamed(o);
    std::string out = streamed.on_event(R"({"event":"workflow_started","task_id":"t","data":{"id":"r"}})");
    out += streamed.on_event(R"({"event":"node_started","task_id":"t","data":{"title":"Summarise"}})");
    out += streamed.on_event(R"({"event":"text_chunk","task_id":"t","data":{"text":"Heat pumps"}})");
    out += streamed.on_event(
        R"({"event":"workflow_finished","task_id":"t","data":{"status":"succeeded","outputs":{"summary":"Heat pumps"},"total_tokens":512}})"
    );
    out += streamed.on_end();
    auto f = frames_of(out);
    ASSERT_EQ(f.size(), 4u) << out;
    EXPECT_EQ(f[0].at("choices").at(0).at("delta").at("content"), "Heat pumps")
        << "the text once, not again at the end";
    EXPECT_EQ(f[2].at("usage").at("total_tokens"), 512);
    EXPECT_EQ(f[2].at("usage").at("prompt_tokens"), 0) << "Dify gives workflows a total only";

    completion_translator silent(o); // no text_chunk: the output variable is the answer
    out = silent.on_event(
        R"({"event":"workflow_finished","data":{"status":"succeeded","outputs":{"summary":"Short.","other":1},"total_tokens":3}})"
    );
    f = frames_of(out);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].at("choices").at(0).at("delta").at("content"), "Short.");

    completion_translator failed(o);
    f = frames_of(failed.on_event(
        R"({"event":"workflow_finished","data":{"status":"failed","error":"node blew up","outputs":{}}})"
    ));
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].at("error").at("code"), "workflow_failed");
    EXPECT_NE(
        std::string(f[0].at("error").at("message").as_string()).find("node blew up"), std::string::npos
    );
    EXPECT_EQ(failed.on_end(), "") << "no [DONE] after an error";
}

TEST(OpenAiStream, ErrorsAndCutStreamsEndWithAnErrorFrame)
{
    completion_translator t(chat_options());
    t.on_event(R"({"event":"message","answer":"par"})");
    auto f = frames_of(t.on_event(
        R"({"event":"error","code":"completion_request_error","status":400,"message":"Rate limit reached"})"
    ));
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].at("error").at("code"), "completion_request_error");
    EXPECT_EQ(f[0].at("error").at("type"), "invalid_request_error");
    EXPECT_EQ(t.error()->status, 400);
    EXPECT_EQ(t.on_end(), "");

    completion_translator cut(chat_options());
    cut.on_event(R"({"event":"message","answer":"par"})");
    f = frames_of(cut.on_end());
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].at("error").at("code"), "upstream_incomplete") << "no message_end: not a finished answer";

    completion_translator silent(chat_options());
    f = frames_of(silent.on_failure("upstream_timeout", "Dify sent nothing for 60 s."));
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].at("error").at("type"), "server_error");
    EXPECT_EQ(silent.on_end(), "");

    completion_translator late(chat_options()); // Dify broke off after its answer was complete
    late.on_event(R"({"event":"message","answer":"done"})");
    late.on_event(message_end);
    f = frames_of(late.on_failure("upstream_stream_broken", "x"));
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[1], "[DONE]");
    EXPECT_FALSE(late.error());

    completion_translator junk(chat_options());
    EXPECT_EQ(junk.on_event("{not json"), "") << "a malformed event is skipped";
    EXPECT_EQ(junk.on_event(R"(["an", "array"])"), "");
}

TEST(OpenAiStream, AnEmptyAnswerStillNamesItsRole)
{
    completion_translator t(chat_options());
    t.on_event(message_end);
    auto f = frames_of(t.on_end());
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[0].at("choices").at(0).at("delta").at("role"), "assistant");
    EXPECT_EQ(f[0].at("choices").at(0).at("finish_reason"), "stop");
    EXPECT_EQ(f[1], "[DONE]");
}

TEST(ConversationMap, RemembersExpiresAndForgetsTheOldestFirst)
{
    conversation_map m(2);
    m.remember("alpha", "a", "conv-a", 1000, 60);
    EXPECT_EQ(m.find("a", 1059), "conv-a");
    EXPECT_FALSE(m.find("a", 1060)) << "expired";
    m.remember("alpha", "a", "conv-a", 1000, 60);
    m.remember("alpha", "b", "conv-b", 1000, 60);
    m.remember("alpha", "a", "conv-a2", 1001, 60); // rewritten: now the newest
    m.remember("alpha", "c", "conv-c", 1002, 60);  // over capacity: b, the oldest, goes
    EXPECT_FALSE(m.find("b", 1010));
    EXPECT_EQ(m.find("a", 1010), "conv-a2");
    EXPECT_EQ(m.find("c", 1010), "conv-c");
    EXPECT_EQ(m.size(), 2u);
    for (int i = 0; i < 1000; ++i)
        m.remember("alpha", "a", "conv", 1003, 60); // rewrites do not grow anything
    EXPECT_EQ(m.size(), 2u);
}

TEST(ConversationMap, ATenantFillingTheMapForgetsItsOwnConversationsOnly)
{
    conversation_map m(10);
    for (int i = 0; i < 3; ++i)
        m.remember("beta", "b" + std::to_string(i), "conv-b", 1000, 60);
    for (int i = 0; i < 1000; ++i) {
        m.remember("alpha", "a" + std::to_string(i), "conv-a", 1000, 60);
        m.remember("alpha", "a" + std::to_string(i), "conv-a2", 1000, 60); // rewrites queue too
    }
    EXPECT_EQ(m.size(), 10u);
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(m.find("b" + std::to_string(i), 1001), "conv-b");
    EXPECT_EQ(m.find("a999", 1001), "conv-a2");
    EXPECT_FALSE(m.find("a0", 1001));
}

TEST(OpenAiImages, DataUrlsAreDecodedAndEveryBadOneSaysWhy)
{
    std::string why;
    auto png = parse_image_data_url("data:image/png;base64,iVBORw0KGgo=", why);
    ASSERT_TRUE(png) << why;
    EXPECT_EQ(png->media_type, "image/png");
    EXPECT_EQ(png->extension, "png");
    EXPECT_EQ(png->bytes, std::string("\x89PNG\r\n\x1a\n", 8));
    auto jpg = parse_image_data_url("DATA:Image/JPG;name=x.jpg;BASE64,/9j/", why);
    ASSERT_TRUE(jpg) << why;
    EXPECT_EQ(jpg->media_type, "image/jpeg") << "the registered type goes to Dify";
    EXPECT_EQ(jpg->bytes, std::string("\xff\xd8\xff", 3));
    EXPECT_TRUE(parse_image_data_url("data:image/webp;base64,UklGRg", why)) << "padding is optional";

    struct bad_case
    {
        const char* url;
        const char* says;
    };
    for (auto [url, says] : std::initializer_list<bad_case>{
             {"https://example.com/a.png", "http(s) URL or a data: URL"},
             {"data:image/png,rawbytes", "base64-encoded"},
             {"data:image/svg+xml;base64,PHN2Zz4=", "PNG, JPEG, GIF or WebP"},
             {"data:text/plain;base64,aGk=", "PNG, JPEG, GIF or WebP"},
             {"data:image/png;base64,iVBO Rw0K", "not base64"},
             {"data:image/png;base64,iVBORw0KG", "not base64"}, // a lone sixth bit group
             {"data:image/png;base64,===", "not base64"},
             {"data:image/png;base64,", "not base64"},
             {"data:image/png;base64", "http(s) URL or a data: URL"}}) {
        why.clear();
        EXPECT_FALSE(parse_image_data_url(url, why)) << url;
        EXPECT_NE(why.find(says), std::string::npos) << url << ": " << why;
    }
}

TEST(OpenAiImages, TheUploadFormsBoundaryIsRandomAndOccursInNeitherTheUserNorTheBytes)
{
    std::vector<std::uint64_t> draws{1, 2, 3, 4};
    std::size_t next = 0;
    auto random = [&] { return draws[next++ % draws.size()]; };
    const std::string first = "dify-gateway-00000000000000010000000000000002";
    const std::string second = "dify-gateway-00000000000000030000000000000004";
    inline_image image{"image/png", "png", "a--" + first + "\r\nb"};
    auto form = files_upload_form("alpha:u1", "image-1.png", image, random);
    EXPECT_EQ(form.content_type, "multipart/form-data; boundary=" + second) << "the first draw occurs in the bytes";
    EXPECT_EQ(
        form.body, "--" + second + "\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalpha:u1\r\n--" + second +
                       "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image-1.png\"\r\n"
                       "Content-Type: image/png\r\n\r\na--" + first + "\r\nb\r\n--" + second + "--\r\n"
    );
}

TEST(OpenAiImages, TheNewestMessagesDataImagesAreTakenOutAndEveryOneIsReplacedByItsDigest)
{
    auto request = [](std::string history_image, std::vector<std::string> newest) {
        chat_request r;
        r.messages.push_back({"user", "before", {std::move(history_image)}});
        r.messages.push_back({"assistant", "ok", {}});
        r.messages.push_back({"user", "now", std::move(newest)});
        return r;
    };
    const std::string png = "data:image/png;base64,iVBORw0KGgo=";
    auto r = request(png, {"https://example.com/a.png", png});
    api_error err;
    auto taken = take_inline_images(r, err);
    ASSERT_TRUE(taken) << err.message;
    EXPECT_EQ(*taken, std::vector<std::string>{png});
    EXPECT_EQ(r.messages[0].images[0].rfind("data:sha256,", 0), 0u);
    EXPECT_EQ(r.messages[0].images[0], r.messages[2].images[1]) << "the same image, the same stand-in";
    EXPECT_EQ(r.messages[2].images[0], "https://example.com/a.png");
    auto again = request(png, {});
    take_inline_images(again, err);
    EXPECT_EQ(history_digest(r.messages, 1), history_digest(again.messages, 1));

    auto too_many = request("https://x/y.png", std::vector<std::string>(max_inline_images + 1, png));
    EXPECT_FALSE(take_inline_images(too_many, err));
    EXPECT_NE(err.message.find("at most 10 data: images"), std::string::npos) << err.message;
    auto too_big = request("https://x/y.png", {"data:image/png;base64," + std::string(max_inline_image_bytes / 3 * 4 + 8, 'A')});
    EXPECT_FALSE(take_inline_images(too_big, err));
    EXPECT_NE(err.message.find("at most 10 MiB"), std::string::npos) << err.message;
    auto bad_history = request("data:nonsense", {});
    EXPECT_TRUE(take_inline_images(bad_history, err)) << "history images are not checked: they are not sent";
    auto other_scheme = request("https://x/y.png", {"ftp://x/y.png"});
    EXPECT_FALSE(take_inline_images(other_scheme, err));
    EXPECT_EQ(err.code, "invalid_image_url");
}

} // namespace
} // namespace gw::core::openai
