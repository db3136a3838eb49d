// libFuzzer: the `user` rewriters (JSON body, query string, multipart splice), with their
// contract as the oracle: whatever they accept comes out well-formed, with every `user`
// namespaced under the tenant; and the JSON splice agrees with the rewrite by a Boost.JSON
// document it replaced (tests/support/user_rewrite_reference.hpp).
#include "core/multipart.hpp"
#include "core/text.hpp"
#include "core/user_rewrite.hpp"
#include "tests/support/user_rewrite_reference.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

void require(bool ok)
{
    if (!ok) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 3) {
    case 0: {
        std::string ns;
        gw::core::json_references refs;
        auto out = gw::core::rewrite_json_user(input, "t", &ns, &refs);
        require(gw::test::rewrite_differs_from_reference(input).empty());
        if (!out) break;
        boost::json::error_code ec;
        boost::json::parse_options limits;
        limits.max_depth = 64; // as deep as the rewrite accepts
        auto doc = boost::json::parse(*out, ec, {}, limits);
        require(!ec && doc.is_object());
        const auto* user = doc.get_object().if_contains("user");
        require(user && user->is_string() && user->get_string() == ns && ns.starts_with("t:"));
        break;
    }
    case 1: {
        auto out = gw::core::rewrite_query_user(input, "t");
        for (auto part : gw::core::split(out, '&')) {
            auto eq = part.find('=');
            auto key = gw::core::form_decode(part.substr(0, eq));
            if (!key || *key != "user") continue;
            auto value = gw::core::form_decode(part.substr(eq + 1));
            require(eq != std::string_view::npos && value && value->starts_with("t:"));
        }
        break;
    }
    case 2: {
        auto nl = input.find('\n');
        if (nl == std::string_view::npos) break;
        auto boundary = input.substr(0, nl);
        auto body = input.substr(nl + 1);
        auto splice = gw::core::rewrite_multipart_user(body, boundary, "t");
        if (!splice) break;
        auto flat = splice->flatten(body);
        require(flat.size() == splice->size());
        auto form = gw::core::parse_multipart(flat, boundary);
        require(form.error.empty());
        for (const auto& part : form.parts)
            if (part.name == "user" && !part.filename) require(std::string_view(part.data).starts_with("t:"));
        break;
    }
    }
    return 0;
}
