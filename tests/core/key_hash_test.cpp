#include "core/key_hash.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

TEST(KeyHash, Sha256KnownVectors)
{
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hash_key("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(KeyHash, RecognisesHashedKeys)
{
    EXPECT_TRUE(is_hashed_key(hash_key("x")));
    EXPECT_TRUE(is_hashed_key("sha256:" + std::string(64, 'A')));
    EXPECT_FALSE(is_hashed_key("sha256:" + std::string(63, 'a')));
    EXPECT_FALSE(is_hashed_key("sha256:" + std::string(64, 'g')));
    EXPECT_FALSE(is_hashed_key("plain-key"));
}

TEST(KeyHash, DigestsReadFromHexInEitherCase)
{
    const auto upper = digest_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    ASSERT_TRUE(upper);
    EXPECT_EQ(*upper, sha256("abc"));
    EXPECT_EQ(digest_from_hex(sha256_hex("abc")), sha256("abc"));
    EXPECT_FALSE(digest_from_hex(std::string(63, 'a'))) << "too short";
    EXPECT_FALSE(digest_from_hex(std::string(66, 'a'))) << "too long";
    EXPECT_FALSE(digest_from_hex(std::string(63, 'a') + "g")) << "not hex";
    EXPECT_NE(sha256_digest_hash{}(sha256("a")), sha256_digest_hash{}(sha256("b")));
}

TEST(KeyHash, ConstantTimeEqual)
{
    EXPECT_TRUE(constant_time_equal("", ""));
    EXPECT_TRUE(constant_time_equal("secret", "secret"));
    EXPECT_FALSE(constant_time_equal("secret", "secreT"));
    EXPECT_FALSE(constant_time_equal("secret", "secret2"));
}

} // namespace
} // namespace gw::core
