// Loads a gateway configuration: JSON with comments and trailing commas, `${ENV}`
// expansion, typed reading with unknown-key rejection, then cross-field validation.
// Never throws on bad input: every problem comes back with its JSON path.
#pragma once

#include "config/env_expand.hpp"
#include "config/gateway_config.hpp"

#include <optional>
#include <string>
#include <vector>

namespace gw::config {

struct load_result
{
    std::optional<gateway_config> config; // set only when `problems` is empty
    std::vector<std::string> problems;
    bool ok() const { return config.has_value(); }
};

load_result load_config_text(std::string_view text, const env_lookup& env = process_env());
load_result load_config_file(const std::string& path, const env_lookup& env = process_env());

} // namespace gw::config
