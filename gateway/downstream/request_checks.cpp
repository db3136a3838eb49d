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

// Headers whose second copy a WSGI server and the gateway would read differently.
constexpr std::string_view single_headers[] = {"content-type", "content-length",  "transfer-encoding", "host",
                                               "authorization", "content-encoding", "expect",            "x-request-id"};

gateway_error bad(std::string message)
{
    return {400, "bad_request", std::move(message)};
}

} // namespace

std::optional<gateway_error> check_request_head(const http::request_header<>& head)
{
    if (!known_method(head.method_string()))
        return gateway_error{405, "method_not_allowed", "The method is not allowed for the requested URL."};
    auto target = head.target();
    if (target.empty() || target.front() != '/' || target.find('#') != std::string_view::npos)
        return bad("The request target must be an absolute path.");
    std::size_t seen[std::size(single_headers)] = {};
    for (const auto& f : head) {
        // A CR or LF inside a value (obs-fold, injection) must never reach Dify's parser, nor
        // any other control character: Python's str.strip() removes some of them (and
        // non-ASCII spaces) where the gateway would not, e.g. around a Content-Type.
        for (unsigned char ch : f.value())
            if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
                return bad(ch == '\r' || ch == '\n' ? "Header values must not contain CR or LF."
                                                     : "Header values must not contain control characters.");
        auto name = f.name_string();
        if (core::iequals(name, "content-type")) {
            for (unsigned char ch : f.value())
                if (ch >= 0x80) return bad("The Content-Type header must be ASCII.");
            if (!core::plain_media_type(f.value()) || !core::unambiguous_header_params(f.value()))
                return bad("The Content-Type header must be one media type with unambiguous parameters.");
        }
        for (std::size_t i = 0; i < std::size(single_headers); ++i)
            if (core::iequals(name, single_headers[i]) && ++seen[i] > 1)
                return bad("The request has more than one " + std::string(name) + " header.");
    }
    if (head.count(http::field::trailer) > 0) return bad("Requests with trailers are not accepted.");
    auto te = head[http::field::transfer_encoding];
    if (head.count(http::field::transfer_encoding) > 0 && !core::iequals(core::trim(te), "chunked"))
        return bad("The only transfer coding accepted is a single 'chunked'.");
    auto ce = head[http::field::content_encoding];
    if (head.count(http::field::content_encoding) > 0 && !core::iequals(core::trim(ce), "identity"))
        return bad("Request bodies with a Content-Encoding are not accepted.");
    return std::nullopt;
}

bool forwarded_request_header(std::string_view name, std::span<const std::string_view> connection_tokens)
{
    static constexpr std::string_view dropped[] = {
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "authorization", "content-length", "x-request-id", "expect",
        "traceparent", "tracestate"}; // the trace context goes as the gateway read it (upstream_request.cpp)
    if (name.find('_') != std::string_view::npos) return false;
    for (auto d : dropped)
        if (core::iequals(name, d)) return false;
    return !std::binary_search(connection_tokens.begin(), connection_tokens.end(), name, core::iless);
}

} // namespace gw::gateway
