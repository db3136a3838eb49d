#include "config/tracing.hpp"

#include "core/text.hpp"

#include <boost/url/decode_view.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>

namespace gw::config {

namespace {

constexpr std::string_view env_path = "environment";

std::optional<std::int64_t> env_int(const env_lookup& env, const std::string& name, std::int64_t min, std::int64_t max, problems& out)
{
    auto v = env(name);
    if (!v || v->empty()) return std::nullopt;
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (ec != std::errc{} || end != v->data() + v->size() || n < min || n > max) {
        out.add(env_path, name + " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
        return std::nullopt;
    }
    return n;
}

// "k1=v1,k2=v2", values percent-encoded (W3C Baggage style, as OpenTelemetry reads it).
void read_env_headers(const std::string& name, const std::string& text, tracing_config& c, problems& out)
{
    for (auto item : core::split(text, ',')) {
        item = core::trim(item);
        if (item.empty()) continue;
        auto eq = item.find('=');
        auto key = core::trim(item.substr(0, eq));
        if (eq == std::string_view::npos || key.empty()) {
            out.add(env_path, name + " must be key=value pairs separated by commas");
            return;
        }
        auto value = boost::urls::make_pct_string_view(core::trim(item.substr(eq + 1)));
        if (!value) {
            out.add(env_path, name + ": a value is not validly percent-encoded");
            return;
        }
        std::string decoded;
        for (char ch : **value) decoded.push_back(ch);
        c.headers[std::string(key)] = std::move(decoded);
    }
}

void read_env_sampler(const env_lookup& env, tracing_config& c, problems& out)
{
    auto sampler = env("OTEL_TRACES_SAMPLER");
    if (!sampler || sampler->empty()) return;
    double ratio = 1.0;
    if (auto arg = env("OTEL_TRACES_SAMPLER_ARG"); arg && !arg->empty()) {
        auto [end, ec] = std::from_chars(arg->data(), arg->data() + arg->size(), ratio);
        if (ec != std::errc{} || end != arg->data() + arg->size() || ratio < 0 || ratio > 1) {
            out.add(env_path, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1");
            return;
        }
    }
    const auto& s = *sampler;
    if (s == "always_on" || s == "parentbased_always_on") c.sample_ratio = 1.0;
    else if (s == "always_off" || s == "parentbased_always_off") c.sample_ratio = 0.0;
    else if (s == "traceidratio" || s == "parentbased_traceidratio") c.sample_ratio = ratio;
    else {
        out.add(env_path, "OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio or their parentbased_ forms");
        return;
    }
    c.parent_based = s.starts_with("parentbased_");
}

} // namespace

std::optional<otlp_target> parse_otlp_endpoint(const std::string& url, std::string* why)
{
    auto fail = [&](const char* reason) -> std::optional<otlp_target> {
        if (why) *why = reason;
        return std::nullopt;
    };
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed) return fail("is not a URL");
    if (parsed->scheme() != "http" && parsed->scheme() != "https") return fail("is not an http:// or https:// URL");
    if (parsed->host().empty()) return fail("has no host");
    if (parsed->has_userinfo() || parsed->has_fragment()) return fail("has user info or a fragment");
    otlp_target t;
    t.tls = parsed->scheme() == "https";
    t.host = std::string(parsed->encoded_host_address());
    t.port = t.tls ? 443 : 80;
    if (parsed->has_port()) {
        if (parsed->port_number() == 0) return fail("has an invalid port");
        t.port = parsed->port_number();
    }
    t.target = std::string(parsed->encoded_path());
    if (t.target.empty()) t.target = "/";
    if (parsed->has_query()) t.target += "?" + std::string(parsed->encoded_query());
    return t;
}

void apply_otel_env(tracing_config& c, const env_lookup& env, problems& out)
{
    if (auto off = env("OTEL_SDK_DISABLED"); off && core::iequals(core::trim(*off), "true")) return;
    if (auto traces = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); traces && !traces->empty()) {
        c.otlp_endpoint = *traces; // used as it is
    } else if (auto base = env("OTEL_EXPORTER_OTLP_ENDPOINT"); base && !base->empty()) {
        c.otlp_endpoint = *base + (base->ends_with('/') ? "v1/traces" : "/v1/traces");
    }
    for (const char* name : {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"})
        if (auto h = env(name); h && !h->empty()) read_env_headers(name, *h, c, out);
    { // the traces-specific protocol overrides the general one
        std::string name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
        auto p = env(name);
        if (!p || p->empty()) p = env(name = "OTEL_EXPORTER_OTLP_PROTOCOL");
        if (p && !p->empty() && *p != "http/json" && *p != "http/protobuf")
            out.add(env_path, name + " is '" + *p + "': only OTLP over HTTP (http/json, http/protobuf) is supported");
    }
    // The most specific timeout set wins.
    for (const char* name : {"OTEL_BSP_EXPORT_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"})
        if (auto ms = env_int(env, name, 1, 600'000, out)) c.export_timeout_ms = milliseconds(*ms);
    if (auto s = env("OTEL_SERVICE_NAME"); s && !s->empty()) c.service_name = *s;
    read_env_sampler(env, c, out);
    if (auto ms = env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 1, 600'000, out)) c.schedule_delay_ms = milliseconds(*ms);
    if (auto n = env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 1, 1'000'000, out)) c.max_queue_spans = static_cast<int>(*n);
    if (auto n = env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1'000'000, out)) c.max_batch_spans = static_cast<int>(*n);
}

void read_tracing(json_reader r, tracing_config& c, problems& out)
{
    r.get("otlp_endpoint", c.otlp_endpoint);
    if (auto* h = r.member("headers")) {
        const auto path = child_path(r.path(), "headers");
        if (!h->is_object()) out.add(path, "must be an object of strings");
        else
            for (const auto& [k, v] : h->get_object()) {
                if (!v.is_string()) out.add(child_path(path, k), "must be a string");
                else c.headers[std::string(k)] = std::string(v.get_string());
            }
    }
    r.get("service_name", c.service_name);
    r.get("sample_ratio", c.sample_ratio, 0.0, 1.0);
    r.get("parent_based", c.parent_based);
    r.get("export_timeout_ms", c.export_timeout_ms, 1, 600'000);
    r.get("schedule_delay_ms", c.schedule_delay_ms, 1, 600'000);
    r.get("max_queue_spans", c.max_queue_spans, 1, 1'000'000);
    r.get("max_batch_spans", c.max_batch_spans, 1, 1'000'000);
    r.finish();
}

void check_tracing(const tracing_config& c, problems& out)
{
    std::string why;
    if (!c.otlp_endpoint.empty() && !parse_otlp_endpoint(c.otlp_endpoint, &why))
        out.add("tracing.otlp_endpoint", "'" + c.otlp_endpoint + "' " + why);
    auto token_char = [](unsigned char ch) { return ch > 0x20 && ch < 0x7f && ch != ':'; };
    auto value_char = [](unsigned char ch) { return ch == '\t' || (ch >= 0x20 && ch != 0x7f); };
    for (const auto& [k, v] : c.headers)
        if (k.empty() || !std::all_of(k.begin(), k.end(), token_char) || !std::all_of(v.begin(), v.end(), value_char))
            out.add("tracing.headers", "'" + k + "' is not a valid header");
    if (c.service_name.empty()) out.add("tracing.service_name", "must not be empty");
    if (c.max_batch_spans > c.max_queue_spans)
        out.add("tracing.max_batch_spans", "must not be more than max_queue_spans");
}

} // namespace gw::config
