// Collects configuration problems, each tied to the JSON path it concerns, so that
// every problem in a file is reported at once ("tenants.billing.default_app: ...").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gw::config {

class problems
{
public:
    void add(std::string_view path, std::string_view message)
    {
        list_.push_back(path.empty() ? std::string(message) : std::string(path) + ": " + std::string(message));
    }
    bool empty() const { return list_.empty(); }
    const std::vector<std::string>& list() const { return list_; }

private:
    std::vector<std::string> list_;
};

// Joins a parent path and a member name ("server" + "listen" -> "server.listen").
inline std::string child_path(std::string_view parent, std::string_view key)
{
    if (parent.empty()) return std::string(key);
    return std::string(parent) + "." + std::string(key);
}

inline std::string index_path(std::string_view parent, std::size_t i)
{
    return std::string(parent) + "[" + std::to_string(i) + "]";
}

} // namespace gw::config
