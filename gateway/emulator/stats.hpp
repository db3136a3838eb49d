// What the emulator saw, for tests and benchmarks (/_emulator/stats): connections and
// TLS handshakes accepted (by protocol version, and how many resumed a session), requests
// per path, and the most recent requests as received.
#pragma once

#include "gateway/emulator/dify_api.hpp"
#include "gateway/emulator/wire.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace gw::emulator {

class stats
{
public:
    static constexpr std::size_t recent_limit = 500;

    void connection_accepted() { ++connections_; }
    void tls_handshake(const std::string& version, bool resumed)
    {
        ++handshakes_;
        ++tls_versions_[version];
        if (resumed) ++tls_resumed_;
    }
    void record(const request& req, const request_facts& facts, int status, const std::string& fault);
    boost::json::value to_json() const;
    void clear();

private:
    struct seen
    {
        std::string method, path, query, app_key, app_name, user, user_source, fault;
        int status = 0;
        std::size_t body_bytes = 0;
        std::int64_t at_ms = 0; // when it arrived, ms on a monotonic clock
        std::map<std::string, std::string> headers;
    };

    std::uint64_t connections_ = 0;
    std::uint64_t handshakes_ = 0;
    std::uint64_t tls_resumed_ = 0;
    std::map<std::string, std::uint64_t> tls_versions_;
    std::uint64_t requests_ = 0;
    std::map<std::string, std::uint64_t> by_path_;
    std::deque<seen> recent_;
};

} // namespace gw::emulator
