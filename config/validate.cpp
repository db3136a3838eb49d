#include "config/validate.hpp"

#include "config/redis_url.hpp"

#include "core/key_hash.hpp"
#include "core/text.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

namespace gw::config {

namespace {

std::string quoted(std::string_view s)
{
    return "\"" + std::string(s) + "\"";
}

bool valid_name(std::string_view name)
{
    if (name.empty() || name.size() > 64) return false;
    return std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
               ch == '_' || ch == '.';
    });
}

void check_listen(std::string_view path, const std::string& value, problems& out)
{
    if (!core::parse_host_port(value)) out.add(path, quoted(value) + " is not HOST:PORT");
}

void check_upstream(const std::string& path, upstream_config& u, problems& out)
{
    if (u.url.empty()) return; // reported as required by the reader
    auto parsed = boost::urls::parse_absolute_uri(u.url);
    if (!parsed) {
        out.add(path + ".url", quoted(u.url) + " is not a valid URL");
        return;
    }
    const auto& url = *parsed;
    std::string scheme = core::to_lower(url.scheme());
    if (scheme != "http" && scheme != "https") {
        out.add(path + ".url", "scheme must be http or https (got " + quoted(url.scheme()) + ")");
        return;
    }
    if (url.host().empty()) out.add(path + ".url", "has no host");
    if (url.has_userinfo()) out.add(path + ".url", "must not contain credentials");
    if (url.has_query() || url.has_fragment()) out.add(path + ".url", "must not have a query or fragment");
    u.tls = scheme == "https";
    u.host = std::string(url.encoded_host_address());
    if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
    u.port = url.has_port() ? url.port_number() : (u.tls ? 443 : 80);
    if (url.has_port() && u.port == 0) out.add(path + ".url", "port must be between 1 and 65535");
    u.base_path = std::string(url.encoded_path());
    while (!u.base_path.empty() && u.base_path.back() == '/') u.base_path.pop_back();
    if (!u.ca_file.empty()) {
        if (!u.tls) out.add(path + ".ca_file", "is only used with an https:// url");
        std::ifstream f(u.ca_file);
        if (!f) out.add(path + ".ca_file", "cannot read " + quoted(u.ca_file));
    }
    if (u.retry.base_delay_ms > u.retry.max_delay_ms)
        out.add(path + ".retry.base_delay_ms", "must not exceed retry.max_delay_ms");
    if (u.connect_timeout_ms > u.response_timeout_ms)
        out.add(path + ".connect_timeout_ms", "must not exceed response_timeout_ms");
}

void check_tenant(
    const std::string& path,
    const std::string& name,
    tenant_config& t,
    const gateway_config& c,
    std::map<std::string, std::string>& key_owner,
    problems& out
)
{
    for (std::size_t i = 0; i < t.keys.size(); ++i) {
        const auto& key = t.keys[i];
        auto key_path = index_path(path + ".keys", i);
        std::string digest;
        if (key.starts_with(core::sha256_prefix)) {
            if (!core::is_hashed_key(key)) {
                out.add(key_path, "must be sha256: followed by 64 hex digits");
                continue;
            }
            digest = core::to_lower(key.substr(core::sha256_prefix.size()));
        } else {
            if (key.size() < 16) out.add(key_path, "plaintext keys must be at least 16 characters");
            digest = core::sha256_hex(key);
        }
        auto [it, inserted] = key_owner.emplace(digest, name);
        if (!inserted) out.add(key_path, "the same key is already used by tenant " + quoted(it->second));
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < t.apps.size(); ++i) {
        const auto& app = t.apps[i];
        if (!c.apps.contains(app)) out.add(index_path(path + ".apps", i), quoted(app) + " is not defined in apps");
        if (!seen.insert(app).second) out.add(index_path(path + ".apps", i), quoted(app) + " is listed twice");
    }
    for (std::size_t i = 0; i < t.admin_apps.size(); ++i)
        if (!seen.contains(t.admin_apps[i]))
            out.add(index_path(path + ".admin_apps", i), quoted(t.admin_apps[i]) + " is not in " + path + ".apps");
    if (!t.default_app.empty()) {
        if (!seen.contains(t.default_app))
            out.add(path + ".default_app", quoted(t.default_app) + " is not in " + path + ".apps");
    } else if (t.apps.size() == 1) {
        t.default_app = t.apps.front();
    } else if (t.apps.size() > 1) {
        out.add(path + ".default_app", "is required when the tenant has more than one app");
    }
    if (t.rate) {
        if (t.rate->requests_per_second <= 0)
            out.add(path + ".rate.requests_per_second", "must be greater than 0");
        if (t.rate->burst == 0) t.rate->burst = std::max(1.0, std::ceil(t.rate->requests_per_second));
        if (t.rate->burst < 1) out.add(path + ".rate.burst", "must be at least 1");
    }
}

void check_quota_store(quota_store_config& q, problems& out)
{
    if (q.type == store_kind::redis) {
        if (q.url.empty()) {
            out.add("quota_store.url", "is required when type is \"redis\"");
            return;
        }
        std::string why;
        auto target = parse_redis_url(q.url, &why);
        if (!target)
            out.add("quota_store.url", quoted(q.url) + " " + why + " (expected redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
        bool tls = target && target->tls;
        for (auto [key, value] : {std::pair{"ca_file", &q.ca_file}, {"tls_server_name", &q.tls_server_name},
                                  {"cert_file", &q.cert_file}, {"key_file", &q.key_file}}) {
            if (value->empty() || !target) continue;
            if (!tls) {
                out.add(std::string("quota_store.") + key, "is only used with a rediss:// URL");
            } else if (value != &q.tls_server_name && !std::ifstream(*value)) {
                out.add(std::string("quota_store.") + key, "cannot read " + quoted(*value));
            }
        }
        if (q.cert_file.empty() != q.key_file.empty())
            out.add("quota_store.cert_file", "and quota_store.key_file go together (a client certificate and its key)");
        for (std::size_t i = 0; i < q.sentinels.size(); ++i) {
            auto address = core::parse_host_port(q.sentinels[i]);
            if (!address || address->port == 0 || address->host.empty())
                out.add("quota_store.sentinels[" + std::to_string(i) + "]", quoted(q.sentinels[i]) + " is not HOST:PORT");
        }
        if (q.sentinels.empty() && (!q.sentinel_username.empty() || !q.sentinel_password.empty()))
            out.add("quota_store.sentinel_password", "and quota_store.sentinel_username are only used with quota_store.sentinels");
        if (!q.sentinel_username.empty() && q.sentinel_password.empty())
            out.add("quota_store.sentinel_username", "needs quota_store.sentinel_password (AUTH takes both)");
    } else {
        for (auto [key, set] : {std::pair{"url", !q.url.empty()}, {"sentinels", !q.sentinels.empty()},
                                {"sentinel_username", !q.sentinel_username.empty()}, {"sentinel_password", !q.sentinel_password.empty()}})
            if (set) out.add(std::string("quota_store.") + key, "is only used when type is \"redis\"");
    }
}

// admin.token: plain (>= 16 printable characters) or "sha256:<hex>", stored lower-case as
// core::hash_key() writes it.
void check_admin_token(std::string& token, problems& out)
{
    if (core::is_hashed_key(token))
        token = std::string(core::sha256_prefix) + core::to_lower(token.substr(core::sha256_prefix.size()));
    else if (token.starts_with(core::sha256_prefix))
        out.add("admin.token", "must be sha256: followed by 64 hex digits");
    else if (!token.empty() && token.size() < 16)
        out.add("admin.token", "must be at least 16 characters (or \"sha256:<hex>\")");
    if (std::any_of(token.begin(), token.end(), [](char ch) { return ch <= 0x20 || ch >= 0x7F; }))
        out.add("admin.token", "must be printable ASCII without spaces");
}

} // namespace

void validate(gateway_config& c, problems& out)
{
    check_listen("server.listen", c.server.listen, out);
    check_listen("admin.listen", c.admin.listen, out);
    if (c.server.drain_timeout_ms.count() > 0 && c.server.drain_idle_grace_ms >= c.server.drain_timeout_ms)
        out.add("server.drain_idle_grace_ms", "must be below server.drain_timeout_ms (idle connections would hold every drain to its end)");
    check_admin_token(c.admin.token, out);
    auto server_ep = core::parse_host_port(c.server.listen);
    if (c.server.listen == c.admin.listen && server_ep && server_ep->port != 0)
        out.add("admin.listen", "must differ from server.listen");

    for (auto& [name, u] : c.upstreams) {
        if (!valid_name(name)) out.add("upstreams." + name, "name must be 1-64 characters of A-Z a-z 0-9 . _ -");
        check_upstream("upstreams." + name, u, out);
    }
    for (auto& [name, a] : c.apps) {
        auto path = "apps." + name;
        if (!valid_name(name)) out.add(path, "name must be 1-64 characters of A-Z a-z 0-9 . _ -");
        if (!c.upstreams.contains(a.upstream))
            out.add(path + ".upstream", quoted(a.upstream) + " is not defined in upstreams");
        if (a.openai.type == openai_app_kind::chat && !a.openai.text_input.empty())
            out.add(path + ".openai.text_input", "is for workflow and completion apps (a chat app takes the text as its query)");
        if (a.openai.type != openai_app_kind::workflow && !a.openai.output.empty())
            out.add(path + ".openai.output", "is for workflow apps");
    }
    if (c.tenants.empty()) out.add("tenants", "at least one tenant is required");
    std::map<std::string, std::string> key_owner; // sha256 hex -> tenant
    for (auto& [name, t] : c.tenants) {
        auto path = "tenants." + name;
        if (!valid_name(name)) out.add(path, "name must be 1-64 characters of A-Z a-z 0-9 . _ -");
        check_tenant(path, name, t, c, key_owner, out);
    }
    check_quota_store(c.quota_store, out);
}

} // namespace gw::config
