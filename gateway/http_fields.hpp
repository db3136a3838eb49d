// Reading a message head's fields by a scan of its list. Beast's basic_fields::find and
// operator[] search a tree ordered by case-insensitive name, comparing names without case
// at every step (~400 instructions a lookup, and a request makes a dozen); a head has a
// dozen fields, and each knows Beast's code for its name. Both ways give the first field
// of that name in the order received.
#pragma once

#include "gateway/net.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <string_view>

namespace gw::gateway {

namespace http = beast::http;

// The first value of the field with code `id` (not field::unknown); "" when there is none.
template <typename Fields>
std::string_view field_value(const Fields& fields, http::field id)
{
    for (const auto& f : fields)
        if (f.name() == id) return f.value();
    return {};
}

// The first value of the field named `name` (compared without case); "" when there is none.
template <typename Fields>
std::string_view field_value(const Fields& fields, std::string_view name)
{
    for (const auto& f : fields)
        if (beast::iequals(f.name_string(), name)) return f.value();
    return {};
}

// What Beast's header::keep_alive() says, by the same scan: HTTP/1.1 unless Connection
// names "close", HTTP/1.0 only when it names "keep-alive" (an empty or absent Connection
// is the version's default).
template <bool isRequest, typename Fields>
bool keeps_alive(const http::header<isRequest, Fields>& h)
{
    http::token_list tokens{field_value(h, http::field::connection)}; // exists() is not const in Beast 1.81
    if (h.version() < 11) return tokens.exists("keep-alive");
    return !tokens.exists("close");
}

} // namespace gw::gateway
