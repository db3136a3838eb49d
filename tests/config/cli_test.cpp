// The dify-gateway command line: exit codes and output of each command.
#include "gateway/ops/cli.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace gw::gateway {
namespace {

struct cli_result
{
    int code;
    std::string out, err;
};

cli_result run(std::vector<std::string> args)
{
    std::ostringstream out, err;
    int code = run_cli(args, out, err);
    return {code, out.str(), err.str()};
}

std::string temp_file(const std::string& content)
{
    char name[] = "/tmp/gw-cli-test-XXXXXX";
    int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    ::close(fd);
    std::ofstream(name) << content;
    return name;
}

TEST(Cli, VersionAndHelp)
{
    auto v = run({"--version"});
    EXPECT_EQ(v.code, 0);
    EXPECT_EQ(v.out, std::string("dify-gateway ") + GW_VERSION + "\n");
    auto h = run({"--help"});
    EXPECT_EQ(h.code, 0);
    EXPECT_NE(h.out.find("--check-config FILE"), std::string::npos);
    EXPECT_NE(h.out.find("hash-key KEY"), std::string::npos);
}

TEST(Cli, UsageErrors)
{
    EXPECT_EQ(run({}).code, exit_usage);
    auto r = run({"--frobnicate"});
    EXPECT_EQ(r.code, exit_usage);
    EXPECT_NE(r.err.find("unknown command or option \"--frobnicate\""), std::string::npos);
    EXPECT_EQ(run({"--check-config"}).code, exit_usage);
    EXPECT_EQ(run({"hash-key"}).code, exit_usage);
    EXPECT_EQ(run({"hash-key", ""}).code, exit_usage);
}

TEST(Cli, HashKeyPrintsSha256)
{
    auto r = run({"hash-key", "abc"});
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
}

TEST(Cli, CheckConfigValidAndInvalid)
{
    auto good = temp_file(R"({"upstreams": {"dify": {"url": "https://api.dify.ai"}},
        "apps": {"a": {"api_keys": ["k"]}}, "tenants": {"t": {"keys": ["0123456789abcdef"], "apps": ["a"]}}})");
    auto r = run({"--check-config", good});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, good + ": valid (1 tenants, 1 apps, 1 upstreams)\n");

    auto bad = temp_file(R"({"tenants": {"t": {"keys": ["0123456789abcdef"], "apps": ["a"], "default_app": "x"}}, "oops": 1})");
    r = run({"--check-config", bad});
    EXPECT_EQ(r.code, exit_bad_config);
    EXPECT_NE(r.err.find("  oops: unknown key\n"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("  tenants.t.default_app: \"x\" is not in tenants.t.apps\n"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("  tenants.t.apps[0]: \"a\" is not defined in apps\n"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(bad + ": 3 problems"), std::string::npos) << r.err;
    std::remove(good.c_str());
    std::remove(bad.c_str());
}

} // namespace
} // namespace gw::gateway
