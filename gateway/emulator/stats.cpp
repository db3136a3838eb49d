#include "gateway/emulator/stats.hpp"

#include "core/text.hpp"

#include <boost/json.hpp>

#include <chrono>

namespace gw::emulator {

namespace json = boost::json;

void stats::record(const request& req, const request_facts& facts, int status, const std::string& fault)
{
    ++requests_;
    ++by_path_[req.path];
    auto at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
    seen s{req.method, req.path, req.query, facts.app_key, facts.app_name, facts.user, facts.user_source, fault, status,
           req.body.size(), at_ms, {}};
    // Every header as received (names lower-cased), but the credential (app_key has it).
    for (const auto& [k, v] : req.headers)
        if (auto name = core::to_lower(k); name != "authorization") s.headers[name] = v;
    recent_.push_back(std::move(s));
    if (recent_.size() > recent_limit) recent_.pop_front();
}

json::value stats::to_json() const
{
    json::object paths;
    for (const auto& [p, n] : by_path_) paths[p] = n;
    json::array recent;
    for (const auto& s : recent_) {
        json::object headers;
        for (const auto& [k, v] : s.headers) headers[k] = v;
        recent.push_back(json::object{{"method", s.method}, {"path", s.path}, {"query", s.query}, {"app_key", s.app_key},
                                      {"app", s.app_name}, {"user", s.user}, {"user_source", s.user_source},
                                      {"status", s.status}, {"body_bytes", s.body_bytes}, {"fault", s.fault}, {"at_ms", s.at_ms},
                                      {"headers", headers}});
    }
    json::object versions;
    for (const auto& [v, n] : tls_versions_) versions[v] = n;
    return json::object{{"connections_accepted", connections_}, {"tls_handshakes", handshakes_},
                        {"tls_resumed", tls_resumed_}, {"tls_versions", versions}, {"requests_total", requests_}, {"requests_by_path", paths}, {"recent_requests", recent}};
}

void stats::clear()
{
    connections_ = handshakes_ = tls_resumed_ = requests_ = 0;
    tls_versions_.clear();
    by_path_.clear();
    recent_.clear();
}

} // namespace gw::emulator
