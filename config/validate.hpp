// Cross-field and semantic validation of a gateway configuration: references between
// tenants, apps and upstreams, URL and address syntax, ranges that one key alone cannot
// express. Fills derived fields (upstream host/port/tls, tenant default_app, rate burst).
#pragma once

#include "config/gateway_config.hpp"
#include "config/problems.hpp"

namespace gw::config {

void validate(gateway_config& c, problems& out);

} // namespace gw::config
