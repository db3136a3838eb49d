#include "gateway/downstream/request_checks.hpp"

#include "core/text.hpp"

#include <algorithm>

namespace gw::gateway {

namespace http = boost::beast::http;

namespace {

// Methods of the route table (HEAD runs a GET route), exactly as Werkzeug compares them.
bool known_method(std::string_view m)
{
    return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE";
}

// Headers whose second copy a WSGI server and the gateway would read differently (and
// X-Request-Id, which has no code of Beast's). Names are compared by the code Beast's parser
// gave them: it matched the name without case, as iequals would.
constexpr http::field single_headers[] = {http::field::content_type,      http::field::content_length,
                                          http::field::transfer_encoding, http::field::host,
                                          http::field::authorization,     http::field::content_encoding,
                                          http::field::expect};

gateway_error bad(std::string message)
{
    return {400, "bad_request", std::move(message)};
}

} // namespace

std::optional<gateway_error> check_request_head(const request_head& head)
{
    if (!known_method(head.method_string()))
        return gateway_error{405, "method_not_allowed", "The method is not allowed for the requested URL."};
    auto target = head.target();
    if (target.empty() || target.front() != '/' || target.find('#') != std::string_view::npos)
        return bad("The request target must be an absolute path.");
    std::size_t seen[std::size(single_headers)] = {};
    std::size_t request_ids = 0;
    // Read in the same pass (no lookups by name after it); each occurs once by then.
    bool trailer = false;
    std::optional<std::string_view> transfer_encoding, content_encoding;
    for (const auto& f : head) {
        // A CR or LF inside a value (obs-fold, injection) must never reach Dify's parser, nor
        // any other control character: Python's str.strip() removes some of them (and
        // non-ASCII spaces) where the gateway would not, e.g. around a Content-Type.
        for (unsigned char ch : f.value())
            if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
                return bad(ch == '\r' || ch == '\n' ? "Header values must not contain CR or LF."
                                                     : "Header values must not contain control characters.");
        const auto id = f.name();
        if (id == http::field::content_type) {
            for (unsigned char ch : f.value())
                if (ch >= 0x80) return bad("The Content-Type header must be ASCII.");
            if (!core::plain_media_type(f.value()) || !core::unambiguous_header_params(f.value()))
                return bad("The Content-Type header must be one media type with unambiguous parameters.");
        }
        bool repeated = false;
        if (id == http::field::unknown)
            repeated = core::iequals(f.name_string(), "x-request-id") && ++request_ids > 1;
        for (std::size_t i = 0; i < std::size(single_headers); ++i)
            if (id == single_headers[i]) repeated = ++seen[i] > 1;
        if (repeated) return bad("The request has more than one " + std::string(f.name_string()) + " header.");
        if (id == http::field::trailer) trailer = true;
        if (id == http::field::transfer_encoding) transfer_encoding = f.value();
        if (id == http::field::content_encoding) content_encoding = f.value();
    }
    if (trailer) return bad("Requests with trailers are not accepted.");
    if (transfer_encoding && !core::iequals(core::trim(*transfer_encoding), "chunked"))
        return bad("The only transfer coding accepted is a single 'chunked'.");
    if (content_encoding && !core::iequals(core::trim(*content_encoding), "identity"))
        return bad("Request bodies with a Content-Encoding are not accepted.");
    return std::nullopt;
}

bool is_hop_by_hop(http::field id)
{
    static constexpr http::field hop_by_hop[] = {
        http::field::connection,          http::field::keep_alive,         http::field::proxy_connection,
        http::field::proxy_authorization, http::field::proxy_authenticate, http::field::te,
        http::field::trailer,             http::field::transfer_encoding,  http::field::upgrade};
    for (auto h : hop_by_hop)
        if (id == h) return true;
    return false;
}

bool forwarded_request_header(http::field id, std::string_view name, std::span<const std::string_view> connection_tokens)
{
    // Besides the hop-by-hop ones: what the gateway sets or replaces.
    static constexpr http::field dropped[] = {http::field::host, http::field::authorization, http::field::content_length,
                                              http::field::expect};
    // Names without a code of Beast's; the trace context goes as the gateway read it
    // (upstream_request.cpp).
    static constexpr std::string_view dropped_names[] = {"x-request-id", "traceparent", "tracestate"};
    if (name.find('_') != std::string_view::npos) return false;
    if (id != http::field::unknown) {
        if (is_hop_by_hop(id)) return false;
        for (auto d : dropped)
            if (id == d) return false;
    } else {
        for (auto d : dropped_names)
            if (core::iequals(name, d)) return false;
    }
    return !std::binary_search(connection_tokens.begin(), connection_tokens.end(), name, core::iless);
}

} // namespace gw::gateway
