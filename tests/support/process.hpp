// Child processes for integration tests: redis-server on a free loopback port, and
// dify-gateway binaries (read their "listening on" line). Killed on destruction.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gw::test {

class child_process
{
public:
    // Starts `argv`; with `ready_word`, waits for a stdout line containing it (10 s).
    child_process(std::vector<std::string> argv, const std::string& ready_word = "");
    ~child_process();
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    const std::string& ready_line() const { return ready_line_; }
    pid_t pid() const { return pid_; }
    // SIGTERM, then wait; returns the exit status (or -signal).
    int terminate();
    void kill();

private:
    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::string ready_line_;
};

// A free TCP port on 127.0.0.1 (bound and released).
std::uint16_t free_port();

class running_redis
{
public:
    running_redis();
    ~running_redis();
    std::uint16_t port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
    void stop();
    void start();
    // Runs redis-cli with `args` against this server; returns its output.
    std::string cli(const std::string& args) const;

private:
    std::uint16_t port_;
    std::unique_ptr<child_process> proc_;
};

} // namespace gw::test
