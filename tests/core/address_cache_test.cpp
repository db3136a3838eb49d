#include "core/address_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gw::core {
namespace {

using namespace std::chrono_literals;
using cache = address_cache<std::string>;

TEST(AddressCache, TheFirstUseWaitsForTheOneLookupAndEveryUseJoinsIt)
{
    cache c(30s, 1s);
    auto first = c.on_use(0s);
    EXPECT_TRUE(first.start_lookup);
    EXPECT_TRUE(first.wait);
    auto second = c.on_use(1ms);
    EXPECT_FALSE(second.start_lookup) << "one lookup at a time";
    EXPECT_TRUE(second.wait);
    c.on_lookup({"10.0.0.1"}, 5ms);
    EXPECT_EQ(c.addresses(), std::vector<std::string>{"10.0.0.1"});
    auto fresh = c.on_use(10s);
    EXPECT_FALSE(fresh.start_lookup);
    EXPECT_FALSE(fresh.wait);
}

TEST(AddressCache, StaleAddressesAreUsedWhileTheNextLookupRunsAndKeptWhenItFails)
{
    cache c(30s, 1s);
    ASSERT_TRUE(c.on_use(0s).start_lookup);
    c.on_lookup({"10.0.0.1"}, 0s);
    auto stale = c.on_use(31s);
    EXPECT_TRUE(stale.start_lookup);
    EXPECT_FALSE(stale.wait) << "the old addresses serve while it runs";
    EXPECT_FALSE(c.on_use(31s).start_lookup);
    c.on_lookup({}, 40s); // the resolver is down
    EXPECT_EQ(c.addresses(), std::vector<std::string>{"10.0.0.1"});
    EXPECT_EQ(c.failed_lookups(), 1);
    EXPECT_FALSE(c.on_use(40s + 999ms).start_lookup) << "the next lookup waits retry_after";
    auto again = c.on_use(41s);
    EXPECT_TRUE(again.start_lookup);
    EXPECT_FALSE(again.wait);
    c.on_lookup({"10.0.0.2"}, 41s);
    EXPECT_EQ(c.addresses(), std::vector<std::string>{"10.0.0.2"});
    EXPECT_EQ(c.failed_lookups(), 0);
}

TEST(AddressCache, AFailedConnectMakesTheNextUseWaitForAFreshLookupWithTheOldAddressesAsFallback)
{
    cache c(30s, 1s);
    ASSERT_TRUE(c.on_use(0s).start_lookup);
    c.on_lookup({"10.0.0.1"}, 0s);
    c.on_connect_failed();
    auto step = c.on_use(1s);
    EXPECT_TRUE(step.start_lookup) << "within the TTL: the address may have moved";
    EXPECT_TRUE(step.wait);
    c.on_lookup({}, 2s);
    EXPECT_EQ(c.addresses(), std::vector<std::string>{"10.0.0.1"}) << "the fallback";
    EXPECT_FALSE(c.on_use(2s).wait) << "no lookup runs: nothing to wait for";
    c.on_connected();
    EXPECT_FALSE(c.on_use(3s).start_lookup) << "the old address works: fresh again until its TTL";
}

TEST(AddressCache, WithNoAddressAndAFailedLookupThereIsNothingToUseUntilTheRetry)
{
    cache c(30s, 1s);
    ASSERT_TRUE(c.on_use(0s).start_lookup);
    c.on_lookup({}, 0s);
    auto step = c.on_use(500ms);
    EXPECT_FALSE(step.start_lookup);
    EXPECT_FALSE(step.wait);
    EXPECT_TRUE(c.addresses().empty());
    EXPECT_TRUE(c.on_use(1s).start_lookup);
}

} // namespace
} // namespace gw::core
