// core::admin_action_access: who may use the admin listener's actions.
#include "core/admin_access.hpp"

#include "core/key_hash.hpp"

#include <gtest/gtest.h>

namespace gw::core {
namespace {

TEST(AdminAccess, WithoutATokenOnlyTheSameHostIsServed)
{
    EXPECT_EQ(admin_action_access("", true, ""), admin_access::allowed);
    EXPECT_EQ(admin_action_access("Bearer anything", true, ""), admin_access::allowed);
    EXPECT_EQ(admin_action_access("", false, ""), admin_access::network_refused);
    EXPECT_EQ(admin_action_access("Bearer guess", false, ""), admin_access::network_refused) << "no token to match";
}

TEST(AdminAccess, WithATokenEveryCallerMustSendIt)
{
    const std::string token = "admin-token-0123456789abcdef";
    EXPECT_EQ(admin_action_access("Bearer " + token, false, token), admin_access::allowed);
    EXPECT_EQ(admin_action_access("bearer " + token, false, token), admin_access::allowed) << "the scheme is case-insensitive";
    EXPECT_EQ(admin_action_access("", true, token), admin_access::token_required) << "loopback too";
    EXPECT_EQ(admin_action_access("Bearer " + token + "x", false, token), admin_access::token_required);
    EXPECT_EQ(admin_action_access("Bearer " + token.substr(1), false, token), admin_access::token_required);
    EXPECT_EQ(admin_action_access("Basic " + token, false, token), admin_access::token_required);
    EXPECT_EQ(admin_action_access("Bearer ", false, token), admin_access::token_required);
    EXPECT_EQ(admin_action_access(token, false, token), admin_access::token_required) << "no scheme";
    // Stored hashed, like tenant keys.
    EXPECT_EQ(admin_action_access("Bearer " + token, false, hash_key(token)), admin_access::allowed);
    EXPECT_EQ(admin_action_access("Bearer " + hash_key(token), false, hash_key(token)), admin_access::token_required)
        << "the hash itself is not the token";
}

} // namespace
} // namespace gw::core
