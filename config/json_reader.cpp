#include "config/json_reader.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <charconv>
#include <cmath>

namespace gw::config {

namespace json = boost::json;

namespace {

// A number as people write it ("0.5", "3"), not as JSON serializes doubles ("5E-1").
std::string shortest(double d)
{
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
    return ec == std::errc{} ? std::string(buf, end) : std::string("?");
}

} // namespace

json_reader::json_reader(const json::value& v, std::string path, problems& out) : path_(std::move(path)), out_(out)
{
    if (v.is_object())
        obj_ = &v.get_object();
    else
        out_.add(path_, "must be an object");
}

bool json_reader::has(std::string_view key) const
{
    return obj_ && obj_->contains(key);
}

const json::value* json_reader::find(std::string_view key, bool required)
{
    if (!obj_) return nullptr;
    seen_.emplace(key);
    auto* v = obj_->if_contains(key);
    if (!v && required) out_.add(child_path(path_, key), "is required");
    return v;
}

const json::value* json_reader::member(std::string_view key)
{
    return find(key, false);
}

void json_reader::get(std::string_view key, std::string& out, bool required)
{
    auto* v = find(key, required);
    if (!v) return;
    if (!v->is_string()) {
        out_.add(child_path(path_, key), "must be a string");
        return;
    }
    out = std::string(v->get_string());
    if (required && out.empty()) out_.add(child_path(path_, key), "must not be empty");
}

void json_reader::get(std::string_view key, bool& out)
{
    auto* v = find(key, false);
    if (!v) return;
    if (!v->is_bool()) {
        out_.add(child_path(path_, key), "must be true or false");
        return;
    }
    out = v->get_bool();
}

void json_reader::get(std::string_view key, std::int64_t& out, std::int64_t min, std::int64_t max)
{
    auto* v = find(key, false);
    if (!v) return;
    std::int64_t n = 0;
    if (v->is_int64()) {
        n = v->get_int64();
    } else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
        n = static_cast<std::int64_t>(v->get_uint64());
    } else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() && std::abs(v->get_double()) < 9e15) {
        n = static_cast<std::int64_t>(v->get_double());
    } else {
        out_.add(child_path(path_, key), "must be an integer");
        return;
    }
    if (n < min || n > max) {
        out_.add(
            child_path(path_, key),
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " + std::to_string(n) + ")"
        );
        return;
    }
    out = n;
}

void json_reader::get(std::string_view key, int& out, std::int64_t min, std::int64_t max)
{
    std::int64_t n = out;
    get(key, n, min, max);
    out = static_cast<int>(n);
}

void json_reader::get(std::string_view key, double& out, double min, double max)
{
    auto* v = find(key, false);
    if (!v) return;
    if (!v->is_number()) {
        out_.add(child_path(path_, key), "must be a number");
        return;
    }
    double d = v->to_number<double>();
    if (!(d >= min && d <= max)) {
        out_.add(child_path(path_, key), "must be between " + shortest(min) + " and " + shortest(max) + " (got " + shortest(d) + ")");
        return;
    }
    out = d;
}

std::size_t json_reader::pick(std::string_view key, const std::string_view* names, std::size_t n)
{
    auto* v = find(key, false);
    if (!v) return n;
    if (v->is_string())
        for (std::size_t i = 0; i < n; ++i)
            if (v->get_string() == names[i]) return i;
    std::string choices;
    for (std::size_t i = 0; i < n; ++i)
        choices += (i == 0 ? "\"" : i + 1 == n ? " or \"" : ", \"") + std::string(names[i]) + "\"";
    out_.add(child_path(path_, key), "must be " + choices + " (got " + json::serialize(*v) + ")");
    return n + 1;
}

void json_reader::get(std::string_view key, std::vector<std::string>& out, bool required)
{
    auto* v = find(key, required);
    if (!v) return;
    auto path = child_path(path_, key);
    if (!v->is_array()) {
        out_.add(path, "must be an array of strings");
        return;
    }
    out.clear();
    const auto& arr = v->get_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
        if (!arr[i].is_string()) {
            out_.add(index_path(path, i), "must be a string");
            continue;
        }
        if (arr[i].get_string().empty()) {
            out_.add(index_path(path, i), "must not be empty");
            continue;
        }
        out.emplace_back(arr[i].get_string());
    }
    if (required && arr.empty()) out_.add(path, "must not be empty");
}

void json_reader::finish()
{
    if (!obj_) return;
    for (const auto& [k, v] : *obj_)
        if (!seen_.contains(std::string_view(k))) out_.add(child_path(path_, k), "unknown key");
}

} // namespace gw::config
