// Typed, path-aware reading of one JSON object: each getter leaves the default in
// place when the key is absent, and records a problem (never throws) when the value
// has the wrong type or range. `finish()` reports keys that no getter asked for.
#pragma once

#include "config/problems.hpp"

#include <boost/json/value.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace gw::config {

class json_reader
{
public:
    // `v` must outlive the reader. A non-object records a problem; getters then do nothing.
    json_reader(const boost::json::value& v, std::string path, problems& out);

    bool ok() const { return obj_ != nullptr; }
    const std::string& path() const { return path_; }
    bool has(std::string_view key) const;

    void get(std::string_view key, std::string& out, bool required = false);
    void get(std::string_view key, bool& out);
    void get(std::string_view key, int& out, std::int64_t min, std::int64_t max);
    void get(std::string_view key, std::int64_t& out, std::int64_t min, std::int64_t max);
    void get(std::string_view key, double& out, double min, double max);
    void get(std::string_view key, std::vector<std::string>& out, bool required = false);
    // A duration given as a whole number of `Duration`'s unit (the key says which: _ms, _s).
    template <typename Rep, typename Period>
    void get(std::string_view key, std::chrono::duration<Rep, Period>& out, std::int64_t min, std::int64_t max)
    {
        std::int64_t n = out.count();
        get(key, n, min, max);
        out = std::chrono::duration<Rep, Period>(n);
    }
    // One of a closed set of names (`names[i]` is the name of enum value i); anything else
    // is a problem naming the choices. False when the key held something else.
    template <typename Enum, std::size_t N>
    bool get(std::string_view key, Enum& out, const std::array<std::string_view, N>& names)
    {
        auto i = pick(key, names.data(), N);
        if (i < N) out = static_cast<Enum>(i);
        return i <= N;
    }

    // The member's value for nested readers; nullptr when absent. Marks the key as known.
    const boost::json::value* member(std::string_view key);

    // Records "unknown key" for every member not read or looked up.
    void finish();

private:
    // The index of the key's string among `names`; N when absent, N + 1 when invalid.
    std::size_t pick(std::string_view key, const std::string_view* names, std::size_t n);
    const boost::json::value* find(std::string_view key, bool required);

    const boost::json::object* obj_ = nullptr;
    std::string path_;
    problems& out_;
    std::set<std::string, std::less<>> seen_;
};

} // namespace gw::config
