// `${NAME}` substitution in every string value of a JSON document.
#pragma once

#include "config/problems.hpp"

#include <boost/json/value.hpp>

#include <functional>
#include <optional>
#include <string>

namespace gw::config {

// Looks up an environment variable; nullopt when it is not set.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
env_lookup process_env();

// Replaces `${NAME}` in every string of `doc` (recursively). A missing variable or an
// unterminated `${` is recorded as a problem at that string's path; `$$` is not special.
void expand_env(boost::json::value& doc, const env_lookup& env, problems& out);

// Expands one string; used by expand_env and by tests.
std::optional<std::string> expand_string(std::string_view s, const env_lookup& env, std::string& error);

} // namespace gw::config
