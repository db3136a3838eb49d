// Tenant namespacing of `user` in every place Dify reads it, and the route table.
#include "core/dify_routes.hpp"
#include "core/multipart.hpp"
#include "core/user_rewrite.hpp"
#include "tests/support/mutated_text.hpp"
#include "tests/support/user_rewrite_reference.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

#include <random>

namespace gw::core {
namespace {

namespace json = boost::json;

TEST(UserRewrite, JsonBody)
{
    auto out = rewrite_json_user(R"({"inputs": {}, "query": "hi", "user": "alice"})", "billing");
    ASSERT_TRUE(out);
    auto v = json::parse(*out);
    EXPECT_EQ(v.at("user"), "billing:alice");
    EXPECT_EQ(v.at("query"), "hi");
    EXPECT_EQ(json::parse(*rewrite_json_user(R"({"query": "hi"})", "billing")).at("user"), "billing:default");
    EXPECT_EQ(json::parse(*rewrite_json_user(R"({"user": ""})", "billing")).at("user"), "billing:default");
    EXPECT_EQ(json::parse(*rewrite_json_user(R"({"user": null})", "billing")).at("user"), "billing:default");
    EXPECT_EQ(json::parse(*rewrite_json_user(R"({"user": 42})", "billing")).at("user"), "billing:42");
    EXPECT_EQ(json::parse(*rewrite_json_user(R"({"user": "other:alice"})", "billing")).at("user"), "billing:other:alice")
        << "a client cannot pose as another tenant";
    EXPECT_FALSE(rewrite_json_user("", "billing"));
    EXPECT_FALSE(rewrite_json_user("[1]", "billing"));
    EXPECT_FALSE(rewrite_json_user("{not json", "billing"));
}

TEST(UserRewrite, AJsonBodyKeepsItsBytesBesidesTheUserValues)
{
    // Only the top-level `user` values change; spacing, order, escapes and a nested `user`
    // stay as they came.
    EXPECT_EQ(rewrite_json_user("{ \"query\" : \"h\\u0069\",\n \"user\":\"alice\" ,\"inputs\":{\"user\":\"x\"}}", "billing"),
              "{ \"query\" : \"h\\u0069\",\n \"user\":\"billing:alice\" ,\"inputs\":{\"user\":\"x\"}}");
    // None: one is added first in the object.
    EXPECT_EQ(rewrite_json_user(R"({"query": "hi"})", "billing"), R"({"user":"billing:default","query": "hi"})");
    EXPECT_EQ(rewrite_json_user(" { } ", "billing"), R"( {"user":"billing:default" } )");
    // A repeated `user`: the last one, which Python keeps, is namespaced; earlier ones
    // become null.
    EXPECT_EQ(rewrite_json_user(R"({"user":"x","q":1,"user":"alpha:alice"})", "billing"),
              R"({"user":null,"q":1,"user":"billing:alpha:alice"})");
    // However many there are, the value is written once: the body cannot be made to grow.
    std::string many = "{";
    for (int i = 0; i < 1000; ++i) many += R"("user":0,)";
    many += R"("user":")" + std::string(100000, 'a') + R"("})";
    const auto grown = rewrite_json_user(many, "billing");
    ASSERT_TRUE(grown);
    EXPECT_LE(grown->size(), many.size() + 4 * 1000 + 16);
    // A name written with an escape is the same name to Python.
    EXPECT_EQ(rewrite_json_user(R"({"us\u0065r": "bob"})", "billing"), R"({"us\u0065r": "billing:bob"})");
    // The value is read unescaped and written as JSON.
    std::string ns;
    EXPECT_EQ(rewrite_json_user(R"({"user":"a\"b\u00e9\n"})", "billing", &ns), "{\"user\":\"billing:a\\\"b\xc3\xa9\\u000a\"}");
    EXPECT_EQ(ns, "billing:a\"b\xc3\xa9\n");
    // Another type: its compact JSON text, as Boost.JSON writes it.
    EXPECT_EQ(rewrite_json_user(R"({"user": {"b": [1, 2.0]}})", "billing", &ns), R"({"user": "billing:{\"b\":[1,2E0]}"})");
    EXPECT_EQ(ns, R"(billing:{"b":[1,2E0]})");
    EXPECT_EQ(rewrite_json_user(R"({"user": true})", "billing"), R"({"user": "billing:true"})");
    // As deep as the body may be (64 levels with the object).
    const std::string nested = std::string(63, '[') + std::string(63, ']');
    EXPECT_EQ(rewrite_json_user(R"({"user":)" + nested + "}", "billing", &ns), R"({"user":"billing:)" + nested + R"("})");
}

TEST(UserRewrite, AJsonBodyNamesTheReferencesPythonReads)
{
    json_references refs;
    ASSERT_TRUE(rewrite_json_user(R"({"conversation_id": "a", "message_id": "m", "conversation_id": "b",)"
                                  R"( "inputs": {"f": {"upload_file_id": "F1", "upload_file_id": "F2"}, "upload_file_id": ["F3"]},)"
                                  R"( "files": [{"upload_file_id": "F4"}], "x": {"conversation_id": "nested"}})",
                                  "t", nullptr, &refs));
    EXPECT_EQ(refs.conversation_id, "b") << "a repeated member's last value, as Python keeps it";
    EXPECT_EQ(refs.message_id, "m");
    EXPECT_EQ(refs.upload_file_ids, (std::vector<std::string>{"F1", "F2", "F4"}))
        << "every string upload_file_id, a repeated one's earlier value too (checked, never forwarded unchecked)";
    refs = {};
    ASSERT_TRUE(rewrite_json_user(R"({"conversation_id": "a", "conversation_id": null})", "t", nullptr, &refs));
    EXPECT_EQ(refs.conversation_id, "") << "the last one is null: Dify reads no conversation";
}

TEST(UserRewrite, AReferenceThatIsNoStringIsRefused)
{
    // Dify's str() would make an id of a number (PostgreSQL reads 32 digits as a UUID) that
    // the gateway never checked; Python keeps a repeated member's last value.
    for (std::string_view body : {R"({"message_id": 12345678123412341234123456789012})", R"({"conversation_id": true})",
                                  R"({"conversation_id": {"id": "a"}})", R"({"conversation_id": "a", "conversation_id": 1})",
                                  R"({"files": [{"upload_file_id": 5}]})", R"({"inputs": {"f": {"upload_file_id": false}}})",
                                  R"({"f": {"upload_file_id": "F", "upload_file_id": 7}})"})
        EXPECT_FALSE(rewrite_json_user(body, "t")) << body;
    for (std::string_view body : {R"({"message_id": null})", R"({"conversation_id": 1, "conversation_id": "a"})",
                                  R"({"f": {"upload_file_id": 7, "upload_file_id": "F"}})", R"({"upload_file_id": null})",
                                  R"({"upload_file_id": {"upload_file_id": "F"}})", R"({"x": [5, true], "n": 1})"})
        EXPECT_TRUE(rewrite_json_user(body, "t")) << body;
}

TEST(UserRewrite, AJsonBodyPythonCouldReadDifferentlyIsRefused)
{
    for (std::string_view body : std::initializer_list<std::string_view>{
             "\xef\xbb\xbf{\"user\":\"a\"}",     // a byte-order mark (Flask's bytes reader would skip it)
             R"({"user":"a", "n": NaN})",         // Python reads NaN, Boost.JSON does not
             R"({"user":"a\ud800"})",            // a lone surrogate
             "{\"user\":\"\xc3\x28\"}",            // invalid UTF-8
             R"({"user":"a",})",                  // a trailing comma
             R"({"user":"a"} x)",                 // trailing data
             R"(["user"])",                       // not an object
             std::string_view("{\"user\":\"a\"}\0", 13), // a NUL after the document
         })
        EXPECT_FALSE(rewrite_json_user(body, "t")) << body;
    std::string deep = R"({"user":"a","x":)";
    for (int i = 0; i < 63; ++i) deep += "[";
    deep += "1";
    for (int i = 0; i < 63; ++i) deep += "]";
    EXPECT_TRUE(rewrite_json_user(deep + "}", "t")) << "64 levels";
    EXPECT_FALSE(rewrite_json_user(R"({"user":"a","x":[)" + deep.substr(16) + "]}", "t")) << "65 levels";
}

TEST(UserRewrite, MutatedBodiesAreRewrittenAsTheBoostJsonDocumentRewrote)
{
    // A generate request, cut, with bytes changed, inserted and removed at random: the splice
    // accepts what the document rewrite accepted, and what comes out reads as its document.
    const std::string body = R"({"inputs": {"doc": {"transfer_method": "local_file", "upload_file_id": "F1", "type": "document"}},)"
                             R"( "query": "caf\u00e9 \"quoted\" \ud83d\ude00", "response_mode": "blocking", "user": "alice",)"
                             R"( "conversation_id": "45701982-8118-4bc5-8e9b-64562b4555f2", "files": [{"type": "image",)"
                             R"( "transfer_method": "local_file", "upload_file_id": "F2"}], "auto_generate_name": true, "n": -1.5e3})";
    EXPECT_EQ(test::rewrite_differs_from_reference(body), "");
    std::mt19937 rng(20261202); // fixed: the same variants every run
    const std::string alphabet = "{}[]\",:\\u0123456789.eE+-tfnrl \t\nuser_id\x80\xc3\xa9\xed\xf0";
    for (int i = 0; i < 20000; ++i) {
        const std::string v = test::mutated(body, rng, alphabet, R"("user": 1, )");
        ASSERT_EQ(test::rewrite_differs_from_reference(v), "") << "input: " << v;
    }
}

TEST(UserRewrite, ALargeBodyIsRewrittenWhole)
{
    json::object body{{"query", std::string(10000, 'q')}, {"user", "alice"}};
    json::object inputs;
    for (int i = 0; i < 500; ++i) inputs["field_" + std::to_string(i)] = json::array{i, "value", nullptr};
    body["inputs"] = inputs;
    std::string ns;
    auto out = rewrite_json_user(json::serialize(body), "billing", &ns);
    ASSERT_TRUE(out);
    auto v = json::parse(*out);
    EXPECT_EQ(ns, "billing:alice");
    body["user"] = "billing:alice";
    EXPECT_EQ(v, json::value(body)) << "every member arrives, only `user` changed";
}

TEST(UserRewrite, QueryString)
{
    EXPECT_EQ(rewrite_query_user("user=alice&limit=20", "t"), "user=t%3Aalice&limit=20");
    EXPECT_EQ(rewrite_query_user("limit=20", "t"), "limit=20&user=t%3Adefault");
    EXPECT_EQ(rewrite_query_user("", "t"), "user=t%3Adefault");
    EXPECT_EQ(rewrite_query_user("user=a%20b+c", "t"), "user=t%3Aa%20b%20c");
    EXPECT_EQ(rewrite_query_user("user=x&user=y", "t"), "user=t%3Ax&user=t%3Ay") << "no unprefixed duplicate survives";
    EXPECT_EQ(rewrite_query_user("user=", "t"), "user=t%3Adefault");
}

TEST(UserRewrite, MultipartReplacesTheUserFieldWithoutCopyingTheFile)
{
    std::string file(4096, 'F');
    std::string body = "--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
                       "Content-Type: application/pdf\r\n\r\n" + file +
                       "\r\n--BB\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--BB--\r\n";
    auto splice = rewrite_multipart_user(body, "BB", "billing");
    ASSERT_TRUE(splice);
    std::size_t inserted = 0;
    for (const auto& p : splice->pieces) inserted += p.text.size();
    EXPECT_LT(inserted, 64u) << "the file is referenced, not copied";
    auto out = splice->flatten(body);
    EXPECT_EQ(out.size(), splice->size());
    auto form = parse_multipart(out, "BB");
    ASSERT_EQ(form.error, "");
    ASSERT_EQ(form.parts.size(), 2u);
    EXPECT_EQ(form.parts[0].data, file);
    EXPECT_EQ(form.parts[1].name, "user");
    EXPECT_EQ(form.parts[1].data, "billing:alice");
}

TEST(UserRewrite, MultipartAddsUserAndRepairsAMissingFileType)
{
    // What Python requests sends for files={'file': f}: no Content-Type on the part.
    std::string body = "--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"contract.pdf\"\r\n\r\n%PDF\r\n--BB--\r\n";
    auto out = rewrite_multipart_user(body, "BB", "billing")->flatten(body);
    auto form = parse_multipart(out, "BB");
    ASSERT_EQ(form.error, "") << out;
    ASSERT_EQ(form.parts.size(), 2u);
    EXPECT_EQ(form.parts[0].name, "user");
    EXPECT_EQ(form.parts[0].data, "billing:default");
    EXPECT_EQ(form.parts[1].content_type, "application/pdf");
    EXPECT_EQ(form.parts[1].data, "%PDF");
    EXPECT_FALSE(rewrite_multipart_user("garbage", "BB", "billing"));
}

TEST(UserRewrite, MimeGuess)
{
    EXPECT_EQ(guess_mime_type("a.PDF"), "application/pdf");
    EXPECT_EQ(guess_mime_type("voice.wav"), "audio/wav");
    EXPECT_EQ(guess_mime_type("noext"), "application/octet-stream");
}

TEST(QueryRewrite, AnyParameterNamespacedAndDroppedOnesRemoved)
{
    EXPECT_EQ(rewrite_query_param("created_by_end_user_session_id=bob&page=2&created_by_account=x", "created_by_end_user_session_id",
                                  "alpha", {"created_by_account"}),
              "created_by_end_user_session_id=alpha%3Abob&page=2");
    EXPECT_EQ(rewrite_query_param("page=2", "created_by_end_user_session_id", "alpha"),
              "page=2&created_by_end_user_session_id=alpha%3Adefault");
}

} // namespace
} // namespace gw::core
