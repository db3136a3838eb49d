// RESP commands as the gateway writes them, and RESP replies from bytes: every kind, nesting, any split of the input, and what a
// broken or hostile peer gets (an error, never a crash or a giant allocation).
#include "gateway/quota/resp_reader.hpp"
#include "gateway/quota/redis_connection.hpp"

#include <gtest/gtest.h>

namespace gw::gateway {
namespace {

std::vector<redis_value> read_all(const std::string& bytes, std::size_t piece, bool* failed = nullptr)
{
    resp_reader r;
    std::vector<redis_value> out;
    for (std::size_t at = 0; at < bytes.size(); at += piece) {
        r.feed(bytes.data() + at, std::min(piece, bytes.size() - at));
        while (auto v = r.next()) out.push_back(std::move(*v));
    }
    if (failed) *failed = r.failed();
    return out;
}

TEST(RespReader, EveryKindNestedAndSplitAnywhere)
{
    const std::string wire = "+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-NOSCRIPT no\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n*-1\r\n";
    for (std::size_t piece : {std::size_t{1}, std::size_t{3}, wire.size()}) {
        auto v = read_all(wire, piece);
        ASSERT_EQ(v.size(), 6u) << piece;
        EXPECT_EQ(v[0].type, redis_value::kind::status);
        EXPECT_EQ(v[0].str, "OK");
        EXPECT_EQ(v[1].integer, 42);
        EXPECT_EQ(v[2].str, "hello");
        EXPECT_EQ(v[3].type, redis_value::kind::nil);
        EXPECT_TRUE(v[4].is_error());
        ASSERT_EQ(v[5].elements.size(), 3u);
        EXPECT_EQ(v[5].elements[1].elements[0].str, "a");
        EXPECT_EQ(v[5].elements[1].elements[1].str, "");
        EXPECT_EQ(v[5].elements[2].type, redis_value::kind::nil);
    }
}

TEST(RespReader, MalformedAndHostileInputIsAnError)
{
    bool failed = false;
    read_all("?what\r\n", 100, &failed);
    EXPECT_TRUE(failed) << "an unknown type byte";
    failed = false;
    // Found by the fuzzer: an array header announcing ~1.8e9 elements made hiredis allocate
    // 14 GB up front. Arrays above 65,536 elements are refused.
    auto v = read_all("+OK\r\n*1777777770\r\n:1\r\n", 100, &failed);
    EXPECT_TRUE(failed);
    ASSERT_EQ(v.size(), 1u) << "replies before the bad one still come out";
    failed = false;
    read_all("*1\r\n*65537\r\n", 100, &failed);
    EXPECT_TRUE(failed) << "nested too";
}

// A command goes as an array of bulk strings: the argument count and each length in
// decimal, any byte inside an argument (CR, LF, NUL) as it is, and an empty argument too.
TEST(RedisCommand, EveryArgumentGoesAsABulkStringWithItsExactLength)
{
    EXPECT_EQ(format_redis_command({"SET", "k", ""}), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    std::vector<std::string> args{"EVALSHA", std::string(40, 'f'), "4"};
    args.push_back(std::string("a\r\nb\0c", 6));
    for (int i = 0; i < 120; ++i) args.push_back(std::string(static_cast<std::size_t>(i * 97), static_cast<char>('a' + i % 26)));
    const std::string wire = format_redis_command(args);
    EXPECT_EQ(wire.rfind("*124\r\n$7\r\nEVALSHA\r\n$40\r\n", 0), 0u);
    auto v = read_all(wire, 7); // a command is an array of bulk strings: the reader reads it back
    ASSERT_EQ(v.size(), 1u);
    ASSERT_EQ(v[0].elements.size(), args.size());
    for (std::size_t i = 0; i < args.size(); ++i) EXPECT_EQ(v[0].elements[i].str, args[i]) << i;
}

} // namespace
} // namespace gw::gateway
