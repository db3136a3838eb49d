// dify-emulator streaming over TLS: the SSE wire format and event sequences of every app
// mode, pings, stop, the concurrency limit, faults and introspection.
#include "tests/emulator/emulator_test_util.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>

namespace gw::test {
namespace {

using namespace std::chrono_literals;

emulator::service_options delays(std::chrono::milliseconds token, std::chrono::milliseconds ping = 10s)
{
    emulator::service_options o;
    o.token_delay = token;
    o.ping_interval = ping;
    return o;
}

std::string stream_chat(http_client& c, const std::string& key, const std::string& query, const std::string& user,
                        header_list extra = {})
{
    auto r = post_json(c, "/v1/chat-messages", key, chat_body(query, user, "streaming"), extra);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
}

TEST(EmulatorStream, ChatWireFormat)
{
    running_emulator emu;
    auto c = emu.client();
    auto r = post_json(*c, "/v1/chat-messages", keys::chat, chat_body("Explain quantum entanglement simply.", "u", "streaming"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), "text/event-stream; charset=utf-8");
    EXPECT_TRUE(r.chunked);
    EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
    for (const auto& f : sse_frames(r.body)) EXPECT_EQ(f.rfind("data: {", 0), 0u) << "one data line per event: " << f;
    EXPECT_EQ(r.body.substr(r.body.size() - 2), "\n\n");

    auto events = sse_events(r.body);
    ASSERT_GE(events.size(), 3u);
    std::string answer;
    for (std::size_t i = 0; i + 1 < events.size(); ++i) {
        EXPECT_EQ(events[i].at("event"), "message");
        answer += events[i].at("answer").as_string();
        EXPECT_EQ(events[i].at("conversation_id"), events[0].at("conversation_id"));
    }
    EXPECT_EQ(answer, "Turn 1. You said: \"Explain quantum entanglement simply.\".");
    const auto& end = events.back();
    EXPECT_EQ(end.at("event"), "message_end");
    EXPECT_TRUE(end.at("metadata").at("usage").at("total_price").is_string()) << "stream prices are strings";
    // Envelope key order: event, conversation_id, message_id, created_at, task_id.
    EXPECT_EQ(sse_frames(r.body)[0].rfind("data: {\"event\":\"message\",\"conversation_id\":", 0), 0u);

    // The streamed message is stored: the conversation continues.
    std::string conv(end.at("conversation_id").as_string());
    auto next = post_json(*c, "/v1/chat-messages", keys::chat, chat_body("And then?", "u", "blocking", conv)).json();
    EXPECT_EQ(next.at("answer"), "Turn 2. You said: \"And then?\". Earlier you said: \"Explain quantum entanglement simply.\".");
}

TEST(EmulatorStream, EventSequencesPerAppMode)
{
    running_emulator emu;
    auto c = emu.client();
    auto agent = event_names(stream_chat(*c, keys::agent, "use a tool", "u"));
    EXPECT_EQ(agent.front(), "agent_thought");
    EXPECT_EQ(agent[1], "agent_message");
    EXPECT_EQ(agent[agent.size() - 2], "agent_thought");
    EXPECT_EQ(agent.back(), "message_end");

    auto chatflow = event_names(stream_chat(*c, keys::chatflow, "flow", "u"));
    std::vector<std::string> head(chatflow.begin(), chatflow.begin() + 5);
    EXPECT_EQ(head, (std::vector<std::string>{"ping", "workflow_started", "node_started", "node_finished", "node_started"}));
    EXPECT_EQ(chatflow[5], "message");
    EXPECT_EQ(chatflow[chatflow.size() - 2], "message_end") << "1.13.1+: message_end before workflow_finished";
    EXPECT_EQ(chatflow.back(), "workflow_finished");

    auto r = post_json(*c, "/v1/workflows/run", keys::workflow,
                       json::object{{"inputs", json::object{{"topic", "heat pumps"}}}, {"response_mode", "streaming"}, {"user", "u"}});
    auto wf = event_names(r.body);
    EXPECT_EQ(wf.front(), "ping");
    EXPECT_EQ(wf[1], "workflow_started");
    EXPECT_NE(std::find(wf.begin(), wf.end(), "text_chunk"), wf.end());
    EXPECT_EQ(wf.back(), "workflow_finished");
    auto events = sse_events(r.body);
    EXPECT_EQ(events.front().at("data").at("inputs").at("sys.user_id"), "u");
    EXPECT_EQ(events.back().at("data").at("status"), "succeeded");
    EXPECT_EQ(events.back().at("data").at("created_by").at("user"), "u");
    EXPECT_FALSE(events.back().contains("conversation_id"));

    r = post_json(*c, "/v1/completion-messages", keys::completion,
                  json::object{{"inputs", json::object()}, {"query", "q"}, {"response_mode", "streaming"}, {"user", "u"}});
    events = sse_events(r.body);
    EXPECT_EQ(events.back().at("event"), "message_end");
    EXPECT_FALSE(events.front().contains("conversation_id")) << "completion envelopes have no conversation_id";
}

TEST(EmulatorStream, PingsWhenIdle)
{
    running_emulator emu(delays(60ms, 20ms));
    auto c = emu.client();
    auto names = event_names(stream_chat(*c, keys::chat, "one two three four", "u"));
    auto pings = std::count(names.begin(), names.end(), "ping");
    EXPECT_GE(pings, 1) << "a ping between slow events";
    EXPECT_EQ(names.back(), "message_end");
}

TEST(EmulatorStream, StopEndsAnInFlightStream)
{
    running_emulator emu(delays(50ms));
    auto c = emu.client();
    c->send("POST", "/v1/chat-messages", bearer(keys::chat),
            json::serialize(chat_body("a long question that produces many events to stream", "alice", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    auto first = c->read_until("\n\n");
    auto task_id = std::string(sse_events(first).at(0).at("task_id").as_string());

    auto other = emu.client();
    // Another user's stop is accepted but ignored; the owner's stop ends the stream.
    auto r = post_json(*other, "/v1/chat-messages/" + task_id + "/stop", keys::chat, json::object{{"user", "mallory"}});
    EXPECT_EQ(r.json(), json::parse(R"({"result":"success"})"));
    r = post_json(*other, "/v1/chat-messages/" + task_id + "/stop", keys::chat, json::object{{"user", "alice"}});
    EXPECT_EQ(r.status, 200);
    auto body = first + c->read_rest();
    auto events = sse_events(body);
    EXPECT_EQ(events.back().at("event"), "message_end");
    std::string partial;
    for (const auto& e : events)
        if (e.at("event") == "message") partial += e.at("answer").as_string();
    EXPECT_LT(partial.size(), std::string("Turn 1. You said: \"a long question that produces many events to stream\".").size());
    // Unknown task ids also answer success.
    EXPECT_EQ(post_json(*other, "/v1/chat-messages/nope/stop", keys::chat, json::object{{"user", "alice"}}).status, 200);
}

TEST(EmulatorStream, ADrainLetsStreamsUnderWayFinishAndIdleConnectionsDoNotHoldItUp)
{
    running_emulator emu(delays(30ms));
    auto idle = emu.client();
    ASSERT_EQ(idle->request("GET", "/v1/info", bearer(keys::chat, "")).status, 200); // then stays open, idle
    auto c = emu.client();
    c->send("POST", "/v1/chat-messages", bearer(keys::chat), json::serialize(chat_body("one two three four five six", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    auto first = c->read_until("\n\n");
    std::promise<void> quiet;
    auto quiet_called = quiet.get_future();
    emu.drain(30s, [&] { quiet.set_value(); });
    auto events = sse_events(first + c->read_rest());
    EXPECT_EQ(events.back().at("event"), "message_end") << "the stream under way ran to its end";
    EXPECT_EQ(quiet_called.wait_for(30s), std::future_status::ready) << "then the drain was done";
    EXPECT_ANY_THROW(emu.client()->request("GET", "/v1/info", bearer(keys::chat, ""))) << "no new connections";
}

TEST(EmulatorStream, WorkflowStopFinishesAsStopped)
{
    running_emulator emu(delays(50ms));
    auto c = emu.client();
    c->send("POST", "/v1/workflows/run", bearer(keys::workflow),
            R"({"inputs": {"topic": "a b c d e f g h i j"}, "response_mode": "streaming", "user": "alice"})");
    ASSERT_EQ(c->read_head().status, 200);
    auto head = c->read_until("workflow_started");
    head += c->read_until("\n\n");
    auto started = sse_events(head);
    auto task_id = std::string(started.back().at("task_id").as_string());
    auto other = emu.client();
    // Workflow stops do not check the user (v1.13).
    post_json(*other, "/v1/workflows/tasks/" + task_id + "/stop", keys::workflow, json::object{{"user", "someone-else"}});
    auto events = sse_events(head + c->read_rest());
    EXPECT_EQ(events.back().at("event"), "workflow_finished");
    EXPECT_EQ(events.back().at("data").at("status"), "stopped");
    auto run = get(*other, "/v1/workflows/run/" + std::string(events.back().at("workflow_run_id").as_string()), keys::workflow).json();
    EXPECT_EQ(run.at("status"), "stopped");
}

TEST(EmulatorStream, ConcurrencyLimitIsA400InvalidParam)
{
    auto apps = emulator::parse_apps(R"([
      {"key": "app-limitedchat0000000000001", "mode": "chat", "name": "Limited", "max_active_requests": 1},
      {"key": "app-limitedflow0000000000001", "mode": "workflow", "name": "Limited WF", "max_active_requests": 1},
      {"key": "app-limitedflow0000000000002", "mode": "workflow", "name": "Two WF", "max_active_requests": 2}
    ])");
    running_emulator emu(delays(30ms), true, apps);
    auto a = emu.client(), b = emu.client();
    a->send("POST", "/v1/chat-messages", bearer("app-limitedchat0000000000001"), json::serialize(chat_body("hold the slot", "u", "streaming")));
    ASSERT_EQ(a->read_head().status, 200);
    auto r = post_json(*b, "/v1/chat-messages", "app-limitedchat0000000000001", chat_body("second", "u"));
    EXPECT_EQ(r.status, 400);
    auto msg = std::string(r.json().at("message").as_string());
    EXPECT_EQ(r.json().at("code"), "invalid_param");
    EXPECT_EQ(msg.rfind("Too many requests. Please try again later. The current maximum concurrent requests allowed for `", 0), 0u) << msg;
    EXPECT_EQ(msg.substr(msg.size() - 7), "is `1`.") << msg;
    EXPECT_EQ(r.header("retry-after"), "") << "Dify sends no Retry-After";
    a->read_rest();
    EXPECT_EQ(post_json(*b, "/v1/chat-messages", "app-limitedchat0000000000001", chat_body("now", "u")).status, 200);

    // 1.13 quirk: streaming workflows take and release the slot at once; a limit of 1 fails them all.
    auto wf = json::object{{"inputs", json::object()}, {"response_mode", "streaming"}, {"user", "u"}};
    EXPECT_EQ(post_json(*b, "/v1/workflows/run", "app-limitedflow0000000000001", wf).status, 400);
    a->send("POST", "/v1/workflows/run", bearer("app-limitedflow0000000000002"), json::serialize(wf));
    ASSERT_EQ(a->read_head().status, 200);
    EXPECT_EQ(post_json(*b, "/v1/workflows/run", "app-limitedflow0000000000002", wf).status, 200)
        << "the slot was released right after enqueueing";
    a->read_rest();
}

TEST(EmulatorFaults, StatusFaultsByHeader)
{
    running_emulator emu;
    auto c = emu.client();
    auto with = [&](const std::string& fault) {
        return post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u"), {{"X-Emulator-Fault", fault}});
    };
    auto r = with("status=429; retry_after=3");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.header("retry-after"), "3");
    EXPECT_EQ(r.json().at("code"), "rate_limit_error");
    r = with("status=429");
    EXPECT_EQ(r.header("retry-after"), "");
    r = with("status=500");
    EXPECT_EQ(r.json(), json::parse(R"({"message":"Internal Server Error","code":"unknown","status":500})"));
    for (int s : {502, 503, 504}) {
        r = with("status=" + std::to_string(s));
        EXPECT_EQ(r.status, s);
        EXPECT_EQ(r.header("content-type"), "text/html");
        EXPECT_NE(r.body.find("<center>nginx</center>"), std::string::npos);
    }
    r = with("concurrency");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json().at("code"), "invalid_param");
    EXPECT_TRUE(r.json().at("message").as_string().starts_with("Too many requests."));
    r = with("status=99");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.json().at("message"), "fault status must be between 100 and 599");
    EXPECT_EQ(with("explode").json().at("code"), "bad_fault");
    EXPECT_EQ(with("stall_ms").json().at("message"), "fault stall_ms needs a value (stall_ms=N)");
    // None of the faulted requests reached "Dify": no conversation exists for u.
    EXPECT_EQ(get(*c, "/v1/conversations?user=u", keys::chat).json().at("data").as_array().size(), 0u);
}

TEST(EmulatorFaults, ProgrammedFaultsApplyToTheNextNMatchingRequests)
{
    running_emulator emu;
    auto c = emu.client();
    auto r = c->request("POST", "/_emulator/faults", {{"Content-Type", "application/json"}},
                        R"({"fault": "status=503", "count": 2, "path": "/v1/chat-messages", "method": "POST"})");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(get(*c, "/v1/info", keys::chat).status, 200) << "other paths are not affected";
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u")).status, 503);
    EXPECT_EQ(c->request("GET", "/_emulator/faults").json().at("faults").at(0).at("remaining"), 1);
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u")).status, 503);
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u")).status, 200);

    c->request("POST", "/_emulator/faults", {}, R"({"fault": "status=429"})");
    EXPECT_EQ(c->request("DELETE", "/_emulator/faults").status, 200);
    EXPECT_EQ(get(*c, "/v1/info", keys::chat).status, 200);
    EXPECT_EQ(c->request("POST", "/_emulator/faults", {}, R"({"fault": "nope"})").json().at("code"), "bad_fault");
    EXPECT_EQ(c->request("POST", "/_emulator/faults", {}, R"({"count": 1})").status, 400);
    EXPECT_EQ(c->request("POST", "/_emulator/faults", {}, "not json").status, 400);
}

TEST(EmulatorFaults, CloseAndResetBeforeResponding)
{
    running_emulator emu;
    auto c = emu.client();
    EXPECT_ANY_THROW(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u"), {{"X-Emulator-Fault", "close"}}));
    c->close();
    EXPECT_ANY_THROW(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u"), {{"X-Emulator-Fault", "reset_after=0"}}));
    c->close();
    EXPECT_EQ(post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u")).status, 200);
}

TEST(EmulatorFaults, ResetAfterKEvents)
{
    running_emulator emu;
    auto c = emu.client();
    c->send("POST", "/v1/chat-messages", {{"Authorization", "Bearer " + keys::chat}, {"Content-Type", "application/json"},
                                          {"X-Emulator-Fault", "reset_after=2"}},
            json::serialize(chat_body("one two three four five six", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    std::string got;
    EXPECT_ANY_THROW({
        while (auto piece = c->read_some()) got += *piece;
    });
    EXPECT_EQ(sse_events(got).size(), 2u);
}

TEST(EmulatorFaults, StallsTrickleMalformedFramesAndErrorEvents)
{
    running_emulator emu;
    auto c = emu.client();
    auto started = std::chrono::steady_clock::now();
    auto r = post_json(*c, "/v1/chat-messages", keys::chat, chat_body("x", "u"), {{"X-Emulator-Fault", "stall_ms=150"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_GE(std::chrono::steady_clock::now() - started, 150ms) << "headers come after the stall";

    // Timed from the request: the emulator's stall may begin before this side has read the
    // first event, so only the whole exchange is sure to last the stall.
    started = std::chrono::steady_clock::now();
    c->send("POST", "/v1/chat-messages", {{"Authorization", "Bearer " + keys::chat}, {"Content-Type", "application/json"},
                                          {"X-Emulator-Fault", "stall_ms=150; after=1"}},
            json::serialize(chat_body("one two three four", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    c->read_until("\n\n");
    auto rest = c->read_rest();
    EXPECT_GE(std::chrono::steady_clock::now() - started, 150ms) << "a silence after the first event";
    EXPECT_EQ(sse_events(rest).back().at("event"), "message_end");

    c->send("POST", "/v1/chat-messages", {{"Authorization", "Bearer " + keys::chat}, {"Content-Type", "application/json"},
                                          {"X-Emulator-Fault", "trickle_ms=1"}},
            json::serialize(chat_body("trickle", "u", "streaming")));
    ASSERT_EQ(c->read_head().status, 200);
    int pieces = 0;
    std::string body;
    while (auto p = c->read_some()) {
        ++pieces;
        body += *p;
    }
    EXPECT_GT(pieces, 20) << "8-byte writes arrive as many small pieces";
    EXPECT_EQ(sse_events(body).back().at("event"), "message_end") << "trickled bytes still form whole events";

    auto malformed = stream_chat(*c, keys::chat, "one two three four", "u", {{"X-Emulator-Fault", "malformed_sse; after=1"}});
    auto frames = sse_frames(malformed);
    ASSERT_GE(frames.size(), 3u);
    EXPECT_EQ(frames[1], "data: {\"event\": \"message\", \"answer\": broken");
    EXPECT_ANY_THROW(json::parse(frames[1].substr(6)));

    auto errored = stream_chat(*c, keys::chat, "one two three four", "u", {{"X-Emulator-Fault", "error_event; after=2"}});
    auto events = sse_events(errored);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events.back().at("event"), "error");
    EXPECT_EQ(events.back().at("code"), "completion_request_error");
    EXPECT_EQ(events.back().at("status"), 400);
    EXPECT_FALSE(events.back().contains("task_id")) << "error events carry no task_id";
}

TEST(EmulatorIntrospection, StatsKeepAliveAndReset)
{
    running_emulator emu;
    auto c = emu.client();
    for (int i = 0; i < 3; ++i)
        post_json(*c, "/v1/chat-messages?trace=1", keys::chat, chat_body("x", "u-" + std::to_string(i)),
                  {{"X-Request-Id", "req-" + std::to_string(i)}, {"traceparent", "00-abc-def-01"}});
    get(*c, "/v1/conversations?user=q-user", keys::chat);
    auto s = emu.stats().as_object();
    EXPECT_EQ(s.at("connections_accepted"), 2) << "one keep-alive connection + the stats client";
    EXPECT_EQ(s.at("tls_handshakes"), 2);
    EXPECT_EQ(s.at("tls_versions"), (boost::json::object{{"TLSv1.3", 2}})) << "TLS 1.3 unless the client caps it";
    EXPECT_EQ(s.at("tls_resumed"), 0) << "the test client keeps no sessions";
    EXPECT_EQ(s.at("requests_by_path").at("/v1/chat-messages"), 3);
    const auto& recent = s.at("recent_requests").as_array();
    ASSERT_EQ(recent.size(), 4u);
    EXPECT_EQ(recent[1].at("method"), "POST");
    EXPECT_EQ(recent[1].at("query"), "trace=1");
    EXPECT_EQ(recent[1].at("user"), "u-1");
    EXPECT_EQ(recent[1].at("user_source"), "body");
    EXPECT_EQ(recent[1].at("app_key"), json::value(keys::chat));
    EXPECT_EQ(recent[1].at("app"), "Emulator Chatbot");
    EXPECT_EQ(recent[1].at("headers").at("x-request-id"), "req-1");
    EXPECT_EQ(recent[1].at("headers").at("traceparent"), "00-abc-def-01");
    EXPECT_EQ(recent[3].at("user"), "q-user");
    EXPECT_EQ(recent[3].at("user_source"), "query");

    EXPECT_EQ(c->request("POST", "/_emulator/reset").status, 200);
    s = emu.stats().as_object();
    EXPECT_EQ(s.at("requests_total"), 0);
    EXPECT_EQ(get(*c, "/v1/conversations?user=u-1", keys::chat).json().at("data").as_array().size(), 0u) << "state cleared";
}

TEST(EmulatorIntrospection, PlainHttpAndMalformedRequests)
{
    running_emulator emu({}, false);
    auto c = emu.client();
    EXPECT_EQ(c->request("GET", "/v1/").status, 200);
    auto raw = c->raw_exchange("BREW /coffee HTCPCP/1.0\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << raw;
    raw = c->raw_exchange("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << raw;
    raw = c->raw_exchange("GET / HTTP/1.1\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n");
    EXPECT_EQ(raw.rfind("HTTP/1.1 431 ", 0), 0u) << raw.substr(0, 40);
    EXPECT_EQ(c->request("GET", "/v1/").status, 200) << "still serving";
}

} // namespace
} // namespace gw::test
