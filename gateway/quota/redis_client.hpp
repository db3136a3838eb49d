// An Asio-native Redis client for one worker: a small pool of connections on the
// worker's executor, each used by one caller at a time for a pipeline of commands
// (one round trip). hiredis only formats commands and parses RESP; all socket I/O is
// Asio's. Every call is bounded by `timeout`; a broken connection is dropped, and after
// a failed connect new connects wait out a growing backoff (calls fail fast meanwhile).
#pragma once

#include "config/redis_url.hpp"
#include "gateway/net.hpp"
#include "gateway/quota/resp_reader.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gw::gateway {

using config::redis_target;

// Errors of the client itself (besides socket errors).
enum class redis_errc
{
    backing_off = 1, // a recent connect failed; not trying again yet
    protocol,        // a reply could not be parsed
    pool_exhausted,  // every connection busy until the deadline
};
error_code make_error_code(redis_errc e);

class redis_client
{
public:
    using command = std::vector<std::string>;

    redis_client(net::any_io_executor ex, redis_target target, std::chrono::milliseconds timeout, int max_connections = 16);
    ~redis_client();

    // Sends `commands` as one pipeline and returns their replies in order (error replies
    // are values, not errors).
    net::awaitable<std::tuple<error_code, std::vector<redis_value>>> exec(std::vector<command> commands);

    std::uint64_t connects() const { return connects_; }

private:
    struct connection;
    net::awaitable<std::tuple<error_code, std::unique_ptr<connection>>> acquire();
    void release(std::unique_ptr<connection> c);

    net::any_io_executor ex_;
    redis_target target_;
    std::chrono::milliseconds timeout_;
    int max_connections_;
    std::vector<std::unique_ptr<connection>> idle_;
    std::list<net::steady_timer*> waiters_;
    int open_ = 0;
    std::uint64_t connects_ = 0;
    std::chrono::steady_clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_{0};
};

} // namespace gw::gateway

template <>
struct boost::system::is_error_code_enum<gw::gateway::redis_errc> : std::true_type
{
};
