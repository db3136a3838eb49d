// Who may use the admin listener's actions (GET /admin/usage, POST /admin/reload). Health,
// readiness and metrics stay open to scrapers; the actions read every tenant's usage or
// change the running configuration, so:
//   - with admin.token set, every caller must send `Authorization: Bearer <token>` (the
//     token is stored plain or as "sha256:<hex>", and compared in constant time);
//   - without one, only callers on the same host (a loopback peer) are served: an admin
//     listener opened to a network for scraping never opens the actions with it.
#pragma once

#include <string_view>

namespace gw::core {

enum class admin_access
{
    allowed,
    token_required,  // 401: no token, or a wrong one
    network_refused, // 403: no admin.token is configured and the caller is not local
};

admin_access admin_action_access(std::string_view authorization, bool from_loopback, std::string_view token);

} // namespace gw::core
