// Tenant namespacing of `user` in every place Dify reads it, and the route table.
#include "core/dify_routes.hpp"
#include "core/multipart.hpp"
#include "core/user_rewrite.hpp"

#include <boost/json.hpp>

#include <gtest/gtest.h>

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

TEST(UserRewrite, ABodyLargerThanTheStackBlockIsRewrittenWhole)
{
    // The document's nodes start in a 4 KiB block on the stack and go on in heap blocks.
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
