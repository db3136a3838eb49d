#include "config/env_expand.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>

#include <cstdlib>

namespace gw::config {

namespace json = boost::json;

env_lookup process_env()
{
    return [](const std::string& name) -> std::optional<std::string> {
        if (const char* v = std::getenv(name.c_str())) return std::string(v);
        return std::nullopt;
    };
}

std::optional<std::string> expand_string(std::string_view s, const env_lookup& env, std::string& error)
{
    std::string out;
    std::size_t i = 0;
    while (i < s.size()) {
        auto start = s.find("${", i);
        if (start == std::string_view::npos) {
            out.append(s.substr(i));
            break;
        }
        out.append(s.substr(i, start - i));
        auto end = s.find('}', start + 2);
        if (end == std::string_view::npos) {
            error = "unterminated ${ in string";
            return std::nullopt;
        }
        std::string name(s.substr(start + 2, end - start - 2));
        if (name.empty()) {
            error = "empty ${} in string";
            return std::nullopt;
        }
        auto value = env(name);
        if (!value) {
            error = "environment variable " + name + " is not set";
            return std::nullopt;
        }
        out += *value;
        i = end + 1;
    }
    return out;
}

namespace {

void expand_at(json::value& v, const std::string& path, const env_lookup& env, problems& out)
{
    if (v.is_string()) {
        std::string_view s = v.get_string();
        if (s.find("${") == std::string_view::npos) return;
        std::string error;
        if (auto r = expand_string(s, env, error))
            v = json::string(*r);
        else
            out.add(path, error);
    } else if (v.is_array()) {
        auto& arr = v.get_array();
        for (std::size_t i = 0; i < arr.size(); ++i) expand_at(arr[i], index_path(path, i), env, out);
    } else if (v.is_object()) {
        for (auto& [k, member] : v.get_object()) expand_at(member, child_path(path, k), env, out);
    }
}

} // namespace

void expand_env(json::value& doc, const env_lookup& env, problems& out)
{
    expand_at(doc, "", env, out);
}

} // namespace gw::config
