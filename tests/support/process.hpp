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

// How a test's redis-server runs besides its loopback port.
struct redis_setup
{
    std::string tls_dir;   // TLS only (tls-port), with ca.pem, server.pem, server.key from there
    bool client_certs = false; // TLS: clients must present a certificate of that CA
    std::string cluster_dir; // cluster-enabled, its nodes-<port>.conf kept there across restarts
    std::vector<std::string> extra_args;
};

class running_redis
{
public:
    explicit running_redis(redis_setup setup = {});
    ~running_redis();
    std::uint16_t port() const { return port_; }
    std::string url() const { return (setup_.tls_dir.empty() ? "redis://127.0.0.1:" : "rediss://127.0.0.1:") + std::to_string(port_) + "/0"; }
    void stop();
    void start();
    // SIGSTOP / SIGCONT: Redis hangs with its data and connections (a partition, a stall).
    void pause();
    void resume();
    // Runs redis-cli with `args` against this server; returns its output.
    std::string cli(const std::string& args) const;

private:
    redis_setup setup_;
    std::uint16_t port_;
    std::uint16_t bus_port_ = 0; // cluster bus (port + 10000 may not exist)
    std::unique_ptr<child_process> proc_;
};

// A fresh directory under /tmp, removed with its files on destruction.
class temp_dir
{
public:
    temp_dir();
    ~temp_dir();
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A Redis Sentinel (redis-server --sentinel) on a free loopback port, monitoring the master
// on `master_port` as `name` (quorum 1, down after 1 s), its config file in a directory of
// its own. `master_password`: the master's (auth-pass); `password`: the sentinel's own;
// `tls_dir`: TLS only, to clients and to the master, as running_redis's.
class running_sentinel
{
public:
    running_sentinel(const std::string& name, std::uint16_t master_port, const std::string& master_password = "",
                     const std::string& password = "", const std::string& tls_dir = "");
    ~running_sentinel();
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    // Runs redis-cli with `args` against this sentinel (with its password); returns its output.
    std::string cli(const std::string& args) const;

private:
    temp_dir dir_;
    std::uint16_t port_;
    std::string password_;
    std::string tls_dir_;
    std::unique_ptr<child_process> proc_;
};

// Writes the test PKI (tests/support/test_certs) as ca.pem, server.pem and server.key into `dir`.
void write_test_pki(const std::string& dir);

} // namespace gw::test
