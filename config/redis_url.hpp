// The quota store's Redis URL, read one way by validation and by the client:
// redis[s]://[[user]:password@]host[:port][/db]. `rediss` is Redis over TLS. User and
// password are percent-decoded (a password may hold any byte); a user name means an ACL
// user (`AUTH user password`). With Redis Cluster the URL names one node to start from;
// the others are learnt from it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace gw::config {

struct redis_target
{
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    int db = 0;
    std::string username; // "" = the default user
    std::string password; // "" = no AUTH
    bool tls = false;     // rediss://
};

// The target of `url`, or nullopt with `why` (a sentence fragment) when it is not one this
// client can use.
std::optional<redis_target> parse_redis_url(const std::string& url, std::string* why = nullptr);

} // namespace gw::config
