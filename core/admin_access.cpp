#include "core/admin_access.hpp"

#include "core/key_hash.hpp"
#include "core/text.hpp"

namespace gw::core {

admin_access admin_action_access(std::string_view authorization, bool from_loopback, std::string_view token)
{
    if (token.empty()) return from_loopback ? admin_access::allowed : admin_access::network_refused;
    constexpr std::string_view scheme = "bearer ";
    if (authorization.size() <= scheme.size() || !iequals(authorization.substr(0, scheme.size()), scheme))
        return admin_access::token_required;
    const auto presented = authorization.substr(scheme.size());
    const bool match = is_hashed_key(token) ? constant_time_equal(hash_key(presented), token) : constant_time_equal(presented, token);
    return match ? admin_access::allowed : admin_access::token_required;
}

} // namespace gw::core
