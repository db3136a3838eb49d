// The route table and path canonicalization: what each bad path gets, and that every
// route says where Dify reads `user`, what it names, and whether it is app-wide.
#include "core/dify_routes.hpp"
#include "core/text.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

std::vector<std::string> segs(std::string_view path)
{
    auto p = canonicalize_path(path);
    EXPECT_TRUE(p) << path;
    return p ? std::vector<std::string>(p->segments.begin(), p->segments.end()) : std::vector<std::string>{};
}

route_match route(std::string_view method, std::string_view path)
{
    auto s = segs(path);
    return find_route(method, s);
}

const dify_route* found(std::string_view method, std::string_view path)
{
    auto m = route(method, path);
    return m.outcome == route_outcome::found ? m.route : nullptr;
}

TEST(CanonicalPath, DecodesOnceDropsEmptyAndDotSegmentsAndResolvesDotDot)
{
    auto p = canonicalize_path("/v1//chat%2Dmessages/");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->decoded(), "/v1/chat-messages");
    EXPECT_EQ(p->wire(), "/v1/chat-messages");
    EXPECT_EQ(canonicalize_path("/v1/./files/../chat-messages")->decoded(), "/v1/chat-messages");
    EXPECT_EQ(canonicalize_path("/v1/workflows%2Frun")->decoded(), "/v1/workflows/run") << "%2F separates, as in PATH_INFO";
    EXPECT_EQ(canonicalize_path("/v1/%2e%2e/v1/info")->decoded(), "/v1/info") << "encoded dots are dots";
    EXPECT_EQ(canonicalize_path("/")->wire(), "/");
    EXPECT_EQ(segs("/a/b/c/d/e/f/g/h/i").size(), 9u) << "past the eight segments kept inline";
    EXPECT_EQ(canonicalize_path("/v1/files/a%2525b/preview")->wire(), "/v1/files/a%2525b/preview")
        << "decoded once: %25 is a literal '%', encoded again on the wire";
    EXPECT_EQ(canonicalize_path("/v1/files/a%20b%3Fc/preview")->wire(), "/v1/files/a%20b%3Fc/preview");
    EXPECT_EQ(canonicalize_path("/v1/files/caf%C3%A9/preview")->wire(), "/v1/files/caf%C3%A9/preview");
}

TEST(CanonicalPath, RefusesWhatCouldBeReadTwoWays)
{
    std::string why;
    EXPECT_FALSE(canonicalize_path("v1/info", &why));
    EXPECT_EQ(why, "the request target is not an absolute path");
    EXPECT_FALSE(canonicalize_path("http://dify/v1/info", &why)) << "absolute-form";
    EXPECT_FALSE(canonicalize_path("/v1/info%zz", &why));
    EXPECT_EQ(why, "the path has a malformed percent escape");
    EXPECT_FALSE(canonicalize_path("/v1/info%", &why));
    EXPECT_FALSE(canonicalize_path("/v1/in%00fo", &why));
    EXPECT_EQ(why, "the path contains a control character");
    EXPECT_FALSE(canonicalize_path("/v1/in%0Afo", &why));
    EXPECT_FALSE(canonicalize_path("/v1/%FF", &why));
    EXPECT_EQ(why, "the path is not valid UTF-8");
    EXPECT_FALSE(canonicalize_path("/v1/%C0%AF", &why)) << "overlong '/'";
    // A path with no escape is checked the same way (it is its own decoding).
    EXPECT_FALSE(canonicalize_path("/v1/in\x01" "fo", &why));
    EXPECT_EQ(why, "the path contains a control character");
    EXPECT_FALSE(canonicalize_path("/v1/in\x7F", &why));
    EXPECT_EQ(why, "the path contains a control character");
    EXPECT_FALSE(canonicalize_path("/v1/\xC0\xAF", &why));
    EXPECT_EQ(why, "the path is not valid UTF-8");
    EXPECT_FALSE(canonicalize_path("/../v1/info", &why));
    EXPECT_EQ(why, "the path climbs above the root");
}

TEST(DifyRoutes, UserPlacesFollowDifysDecorators)
{
    EXPECT_EQ(found("POST", "/chat-messages")->place, user_place::json_body);
    EXPECT_EQ(found("POST", "/workflows/abc/run")->place, user_place::json_body);
    EXPECT_EQ(found("POST", "/workflows/tasks/t/stop")->place, user_place::json_body);
    EXPECT_EQ(found("DELETE", "/conversations/c")->place, user_place::json_body);
    EXPECT_EQ(found("PUT", "/conversations/c/variables/v")->place, user_place::json_body);
    EXPECT_EQ(found("GET", "/conversations")->place, user_place::query);
    EXPECT_EQ(found("GET", "/messages/m/suggested")->place, user_place::query);
    EXPECT_EQ(found("GET", "/files/f/preview")->place, user_place::query);
    EXPECT_EQ(found("POST", "/files/upload")->place, user_place::form);
    EXPECT_EQ(found("POST", "/audio-to-text")->place, user_place::form);
    EXPECT_EQ(found("GET", "/parameters")->place, user_place::none);
    EXPECT_EQ(found("GET", "/workflows/run/r")->place, user_place::none);
    EXPECT_EQ(found("GET", "/workflow/r/events")->place, user_place::query);
    EXPECT_EQ(found("POST", "/form/human_input/tok")->place, user_place::json_body);
    EXPECT_EQ(found("HEAD", "/conversations")->place, user_place::query) << "Flask runs the GET handler for HEAD";
    EXPECT_EQ(found("GET", "/conversations/")->place, user_place::query) << "canonical: no trailing slash";
}

TEST(DifyRoutes, UnknownPathsAndMethodsAreToldApart)
{
    EXPECT_EQ(route("GET", "/chat-messages").outcome, route_outcome::method_not_allowed);
    EXPECT_EQ(route("post", "/chat-messages").outcome, route_outcome::method_not_allowed) << "methods are case-sensitive";
    EXPECT_EQ(route("OPTIONS", "/info").outcome, route_outcome::method_not_allowed);
    EXPECT_EQ(route("POST", "/chat-messages/x").outcome, route_outcome::not_found);
    EXPECT_EQ(route("GET", "/datasets").outcome, route_outcome::not_found);
    EXPECT_EQ(route("POST", "/conversations//name").outcome, route_outcome::method_not_allowed)
        << "canonical /conversations/name: the DELETE route's path";
    EXPECT_EQ(route("GET", "/").outcome, route_outcome::found);
}

TEST(DifyRoutes, GeneratingRoutesStopTheirTasks)
{
    auto stop = [](std::string_view path, std::string_view task) { return stop_path_for(*found("POST", path), task); };
    EXPECT_EQ(stop("/chat-messages", "t1"), "/chat-messages/t1/stop");
    EXPECT_EQ(stop("/completion-messages", "t1"), "/completion-messages/t1/stop");
    EXPECT_EQ(stop("/workflows/run", "t1"), "/workflows/tasks/t1/stop");
    EXPECT_EQ(stop("/workflows/w/run", "t1"), "/workflows/tasks/t1/stop");
    EXPECT_EQ(stop("/workflows/w/run", "t/../x"), "/workflows/tasks/t%2F..%2Fx/stop") << "a task id is one segment";
    EXPECT_EQ(stop("/chat-messages", ""), "");
    EXPECT_EQ(stop_path_for(*found("GET", "/messages"), "t1"), "");
    int generating = 0;
    for (const auto& r : all_routes()) generating += r.generating;
    EXPECT_EQ(generating, 4);
}

TEST(DifyRoutes, AppWideRoutes)
{
    for (auto [method, path] : {std::pair{"GET", "/workflows/logs"}, {"GET", "/app/feedbacks"}, {"GET", "/end-users/e1"},
                                {"GET", "/apps/annotations"}, {"POST", "/apps/annotations"}, {"PUT", "/apps/annotations/a1"},
                                {"DELETE", "/apps/annotations/a1"}, {"POST", "/apps/annotation-reply/enable"},
                                {"GET", "/apps/annotation-reply/enable/status/j1"}})
        EXPECT_TRUE(found(method, path)->app_wide) << method << " " << path;
    EXPECT_EQ(found("GET", "/workflows/logs")->end_user_filter, "created_by_end_user_session_id");
    EXPECT_FALSE(found("GET", "/conversations")->app_wide);
    EXPECT_FALSE(found("GET", "/info")->app_wide);
}

TEST(OwnedReferences, PathsAndQueriesNameWhatDifyDoesNotCheck)
{
    using refs = std::vector<owned_reference>;
    auto of = [](std::string_view method, std::string_view path, std::string_view query) {
        return owned_references(route(method, path), query);
    };
    EXPECT_EQ(of("POST", "/chat-messages/T1/stop", ""), (refs{{owned_kind::task, "t1"}}));
    EXPECT_EQ(of("POST", "/completion-messages/t2/stop", ""), (refs{{owned_kind::task, "t2"}}));
    EXPECT_EQ(of("POST", "/workflows/tasks/t3/stop", ""), (refs{{owned_kind::task, "t3"}}));
    EXPECT_EQ(of("GET", "/workflows/run/%41b", ""), (refs{{owned_kind::workflow_run, "ab"}}))
        << "percent-decoded and lower-cased, as Dify's UUID routes read it";
    EXPECT_EQ(of("GET", "/workflow/R1/events", ""), (refs{{owned_kind::workflow_run, "r1"}}));
    EXPECT_EQ(of("GET", "/files/f1/preview", "user=u"), (refs{{owned_kind::file, "f1"}}));
    EXPECT_EQ(of("DELETE", "/conversations/c1", ""), (refs{{owned_kind::conversation, "c1"}}));
    EXPECT_EQ(of("POST", "/conversations/c1/name", ""), (refs{{owned_kind::conversation, "c1"}}));
    EXPECT_EQ(of("PUT", "/conversations/c1/variables/v1", ""), (refs{{owned_kind::conversation, "c1"}}));
    EXPECT_EQ(of("POST", "/messages/M1/feedbacks", ""), (refs{{owned_kind::message, "m1"}}));
    EXPECT_EQ(of("GET", "/messages/m1/suggested", "user=u"), (refs{{owned_kind::message, "m1"}}));
    EXPECT_EQ(of("POST", "/form/human_input/Tok", ""), (refs{{owned_kind::form, "tok"}}));
    EXPECT_EQ(of("GET", "/messages", "user=u&conversation_id=C%31"), (refs{{owned_kind::conversation, "c1"}}));
    EXPECT_EQ(of("GET", "/messages", "conversation_id=c1&conversation_id=c2"),
              (refs{{owned_kind::conversation, "c1"}, {owned_kind::conversation, "c2"}}))
        << "every value is checked";
    EXPECT_TRUE(of("GET", "/messages", "user=u&conversation_id=").empty());
    EXPECT_TRUE(of("POST", "/chat-messages", "").empty());
    EXPECT_TRUE(of("GET", "/workflows/run", "").empty()) << "not a route";
}

TEST(OwnedReferences, EverySpellingOfAUuidIsOneId)
{
    const std::string canonical = "8d617aaa-0000-4000-8000-0000000000f1";
    // What PostgreSQL's uuid input and Python's uuid.UUID() read as this UUID.
    for (std::string spelling : {"8D617AAA-0000-4000-8000-0000000000F1", "{8d617aaa-0000-4000-8000-0000000000f1}",
                                 "8d617aaa000040008000" "0000000000f1", "8d61-7aaa-0000-4000-8000-0000-0000-00f1",
                                 "urn:uuid:8d617aaa-0000-4000-8000-0000000000f1"}) {
        EXPECT_EQ(normalized_id(spelling), canonical) << spelling;
    }
    EXPECT_EQ(normalized_id("8d617aaa00004000800000000000000f1"), "8d617aaa00004000800000000000000f1") << "33 digits: not a UUID";
    EXPECT_EQ(normalized_id("8d617aaa-0000-4000-8000-0000000000fg"), "8d617aaa-0000-4000-8000-0000000000fg");
    EXPECT_EQ(normalized_id("Task-ABC"), "task-abc") << "other ids: lower-case only";
    EXPECT_EQ(normalized_id("{abc}"), "{abc}");
    EXPECT_EQ(normalized_id("URN:UUID:{8D617AAA-0000-4000-8000-0000000000F1}"), canonical) << "prefix in any case, then braces";
    EXPECT_EQ(normalized_id("urn:uuid:"), "urn:uuid:");
    EXPECT_EQ(normalized_id(""), "");
    // The fast path used for Dify's own ids: exactly the canonical form, nothing else.
    EXPECT_TRUE(is_normalized_uuid(canonical));
    for (std::string other : {"8D617AAA-0000-4000-8000-0000000000F1", "8d617aaa000040008000" "0000000000f1",
                              "{8d617aaa-0000-4000-8000-0000000000f1}", "8d617aaa-0000-4000-8000-0000000000fg",
                              "8d617aaa-0000-4000-8000_0000000000f1", ""}) {
        EXPECT_FALSE(is_normalized_uuid(other)) << other;
    }
    EXPECT_EQ(normalized_id(canonical), canonical) << "what the fast path skips would change nothing";
}

TEST(HeaderParams, AmbiguousParametersAreRefused)
{
    auto p = unambiguous_header_params(R"(multipart/form-data; boundary="a b"; charset=utf-8)");
    ASSERT_TRUE(p);
    EXPECT_EQ(find_param(*p, "boundary"), "a b");
    EXPECT_EQ(find_param(*p, "charset"), "utf-8");
    EXPECT_TRUE(unambiguous_header_params("form-data; NAME=user")) << "keys are case-insensitive";
    EXPECT_EQ(find_param(*unambiguous_header_params("form-data; NAME=user"), "name"), "user");
    EXPECT_FALSE(unambiguous_header_params("multipart/form-data; boundary=a; boundary=b")) << "two boundaries";
    EXPECT_FALSE(unambiguous_header_params("multipart/form-data; boundary=a; BOUNDARY=b"));
    EXPECT_FALSE(unambiguous_header_params("form-data; name=file; name*=UTF-8''user")) << "RFC 2231";
    EXPECT_FALSE(unambiguous_header_params(R"(form-data; name="us\"er")")) << "backslash escape";
    EXPECT_FALSE(unambiguous_header_params(R"(form-data; name="user)")) << "unterminated quote";
    EXPECT_FALSE(unambiguous_header_params(R"(form-data; name="user"x)")) << "bytes after the quote";
    EXPECT_FALSE(unambiguous_header_params("form-data; name = user")) << "spaces around '='";
    EXPECT_FALSE(unambiguous_header_params("form-data; name=us er"));
    EXPECT_FALSE(unambiguous_header_params("multipart/form-data; boundary=AAA; boundary*1=BBB")) << "a continuation";
    EXPECT_FALSE(unambiguous_header_params("multipart/form-data; boundary=XyZ ;x=y")) << "Werkzeug keeps the space";
    EXPECT_FALSE(unambiguous_header_params(R"(multipart/form-data; boundary="XyZ" ;x=y)"));
}

TEST(HeaderParams, OnlyAPlainMediaTypeIsReadAlikeByEveryParser)
{
    EXPECT_TRUE(plain_media_type("application/json"));
    EXPECT_TRUE(plain_media_type("application/json; charset=utf-8"));
    EXPECT_TRUE(plain_media_type("application/vnd.api+json ;x=1"));
    EXPECT_FALSE(plain_media_type("application/json x")) << "Werkzeug: application/json";
    EXPECT_FALSE(plain_media_type("application/json,text/plain"));
    EXPECT_FALSE(plain_media_type("application/json\tx"));
    EXPECT_FALSE(plain_media_type("application/json (x)"));
    EXPECT_FALSE(plain_media_type("json"));
    EXPECT_FALSE(plain_media_type("/json"));
    EXPECT_FALSE(plain_media_type(""));
}

TEST(Utf8, ValidAndInvalidSequences)
{
    EXPECT_TRUE(valid_utf8("plain"));
    EXPECT_TRUE(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    EXPECT_FALSE(valid_utf8("\xC3"));
    EXPECT_FALSE(valid_utf8("\xE0\x80\xAF")) << "overlong";
    EXPECT_FALSE(valid_utf8("\xED\xA0\x80")) << "surrogate";
    EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80")) << "past U+10FFFF";
    EXPECT_FALSE(valid_utf8("\x80"));
}

} // namespace
} // namespace gw::core
