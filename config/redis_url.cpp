#include "config/redis_url.hpp"

#include <boost/url/parse.hpp>

#include <charconv>

namespace gw::config {

std::optional<redis_target> parse_redis_url(const std::string& url, std::string* why)
{
    auto fail = [&](const char* reason) -> std::optional<redis_target> {
        if (why) *why = reason;
        return std::nullopt;
    };
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed) return fail("is not a URL");
    if (parsed->scheme() != "redis" && parsed->scheme() != "rediss") return fail("is not a redis:// or rediss:// URL");
    if (parsed->host().empty()) return fail("has no host");
    if (parsed->has_query() || parsed->has_fragment()) return fail("has a query or fragment, which are not read");
    redis_target t;
    t.tls = parsed->scheme() == "rediss";
    t.host = std::string(parsed->encoded_host_address());
    if (parsed->has_port()) {
        if (parsed->port_number() == 0) return fail("has an invalid port");
        t.port = parsed->port_number();
    }
    if (parsed->has_userinfo()) {
        t.username = parsed->user();
        if (parsed->has_password()) t.password = parsed->password();
        if (!parsed->has_password()) { // redis://secret@host: the password alone, as redis-cli reads it
            t.password = std::move(t.username);
            t.username.clear();
        }
    }
    std::string path(parsed->encoded_path());
    if (path.size() > 1) {
        auto digits = std::string_view(path).substr(1);
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), t.db);
        if (ec != std::errc() || end != digits.data() + digits.size() || t.db < 0) return fail("has a database that is not a number");
    }
    return t;
}

} // namespace gw::config
