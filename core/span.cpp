#include "core/span.hpp"

#include <boost/json.hpp>

namespace gw::core {

namespace json = boost::json;

namespace {

json::object any_value(const span_attribute& a)
{
    return std::visit(
        [](const auto& v) -> json::object {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string>) return {{"stringValue", v}};
            else if constexpr (std::is_same_v<T, std::int64_t>) return {{"intValue", std::to_string(v)}};
            else if constexpr (std::is_same_v<T, double>) return {{"doubleValue", v}};
            else return {{"boolValue", v}};
        },
        a.value
    );
}

json::array attributes_of(const std::vector<span_attribute>& attributes)
{
    json::array out;
    out.reserve(attributes.size());
    for (const auto& a : attributes) out.push_back(json::object{{"key", a.key}, {"value", any_value(a)}});
    return out;
}

json::object span_json(const span& s)
{
    json::object out{
        {"traceId", to_hex(s.trace)},
        {"spanId", to_hex(s.id)},
        {"name", s.name},
        {"kind", static_cast<int>(s.kind)},
        {"startTimeUnixNano", std::to_string(s.start_unix_nano)},
        {"endTimeUnixNano", std::to_string(s.end_unix_nano)},
        {"attributes", attributes_of(s.attributes)}};
    if (!is_zero(s.parent)) out["parentSpanId"] = to_hex(s.parent);
    if (!s.tracestate.empty()) out["traceState"] = s.tracestate;
    if (!s.events.empty()) {
        json::array events;
        for (const auto& e : s.events)
            events.push_back(json::object{{"name", e.name}, {"timeUnixNano", std::to_string(e.time_unix_nano)}});
        out["events"] = std::move(events);
    }
    json::object status{{"code", static_cast<int>(s.status)}};
    if (!s.status_message.empty()) status["message"] = s.status_message;
    out["status"] = std::move(status);
    return out;
}

} // namespace

std::string bounded_text(std::string_view v)
{
    if (v.size() <= max_span_text) return std::string(v);
    std::size_t end = max_span_text;
    while (end > 0 && (static_cast<unsigned char>(v[end]) & 0xC0) == 0x80) --end; // not inside a character
    return std::string(v.substr(0, end));
}

std::string otlp_json(const span_resource& resource, const std::vector<span>& spans)
{
    std::vector<span_attribute> resource_attributes{{"service.name", resource.service_name}};
    if (!resource.service_version.empty()) resource_attributes.push_back({"service.version", resource.service_version});
    if (!resource.instance_id.empty()) resource_attributes.push_back({"service.instance.id", resource.instance_id});
    json::array out_spans;
    out_spans.reserve(spans.size());
    for (const auto& s : spans) out_spans.push_back(span_json(s));
    json::object scope{{"name", "dify-gateway"}};
    if (!resource.service_version.empty()) scope["version"] = resource.service_version;
    json::object scope_spans{{"scope", std::move(scope)}, {"spans", std::move(out_spans)}};
    json::object resource_spans{
        {"resource", json::object{{"attributes", attributes_of(resource_attributes)}}},
        {"scopeSpans", json::array{std::move(scope_spans)}}};
    return json::serialize(json::object{{"resourceSpans", json::array{std::move(resource_spans)}}});
}

} // namespace gw::core
