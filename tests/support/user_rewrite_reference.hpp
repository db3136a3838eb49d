// The `user` rewrite of a JSON body as it was made before the splice, by a Boost.JSON
// document (parse, replace, serialize), kept as the reference the splice is compared with
// (tests and the fuzz target): the same bodies accepted, the same document read from what
// comes out, the same references found. One rule is newer than that rewrite and is
// applied here to the document: references that are not strings are refused.
#pragma once

#include "core/user_rewrite.hpp"
#include "tests/support/json_trace.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

namespace gw::test {

struct rewrite_reference
{
    json::value doc;       // the body with `user` namespaced
    std::string namespaced;
    core::json_references refs;
};

inline void reference_file_ids(const json::value& v, std::vector<std::string>& out)
{
    if (const auto* o = v.if_object()) {
        for (const auto& [k, member] : *o) {
            if (k == "upload_file_id" && member.is_string())
                out.emplace_back(member.get_string());
            else
                reference_file_ids(member, out);
        }
    } else if (const auto* a = v.if_array()) {
        for (const auto& e : *a) reference_file_ids(e, out);
    }
}

// An object (at any depth) whose upload_file_id is a number or a boolean.
inline bool has_odd_file_id(const json::value& v)
{
    if (const auto* o = v.if_object()) {
        if (const auto* f = o->if_contains("upload_file_id"); f && (f->is_number() || f->is_bool())) return true;
        return std::any_of(o->begin(), o->end(), [](const auto& m) { return has_odd_file_id(m.value()); });
    }
    if (const auto* a = v.if_array()) return std::any_of(a->begin(), a->end(), [](const auto& e) { return has_odd_file_id(e); });
    return false;
}

inline std::optional<rewrite_reference> reference_rewrite(std::string_view body, std::string_view tenant)
{
    json::error_code ec;
    json::parse_options limits;
    limits.max_depth = 64;
    auto doc = json::parse(body, ec, {}, limits);
    if (ec || !doc.is_object()) return std::nullopt;
    auto& o = doc.get_object();
    // A reference that is not a string is refused (the splice's rule, the document's reading).
    for (const auto* name : {"conversation_id", "message_id"})
        if (const auto* r = o.if_contains(name); r && !r->is_string() && !r->is_null()) return std::nullopt;
    if (has_odd_file_id(doc)) return std::nullopt;
    std::string user;
    if (auto* v = o.if_contains("user")) {
        if (v->is_string())
            user = std::string(v->get_string());
        else if (!v->is_null())
            user = json::serialize(*v);
    }
    rewrite_reference r;
    r.namespaced = core::namespaced_user(tenant, user);
    if (auto* c = o.if_contains("conversation_id"); c && c->is_string()) r.refs.conversation_id = std::string(c->get_string());
    if (auto* m = o.if_contains("message_id"); m && m->is_string()) r.refs.message_id = std::string(m->get_string());
    reference_file_ids(doc, r.refs.upload_file_ids);
    o["user"] = r.namespaced;
    r.doc = std::move(doc);
    return r;
}

// "" when rewrite_json_user agrees with the reference on `body`, else what differs. Bodies
// with an exponent json_walk and Boost.JSON may read differently are not compared.
inline std::string rewrite_differs_from_reference(std::string_view body)
{
    if (has_huge_exponent(body)) return "";
    std::string ns;
    core::json_references refs;
    const auto out = core::rewrite_json_user(body, "t", &ns, &refs);
    const auto ref = reference_rewrite(body, "t");
    if (out.has_value() != ref.has_value()) return out ? "accepted what Boost.JSON refuses" : "refused what Boost.JSON accepts";
    if (!out) return "";
    json::error_code ec;
    json::parse_options limits;
    limits.max_depth = 64;
    const auto doc = json::parse(*out, ec, {}, limits);
    if (ec) return "the rewritten body does not parse: " + *out;
    if (doc != ref->doc) return "another document: " + *out + " instead of " + json::serialize(ref->doc);
    if (ns != ref->namespaced) return "namespaced user " + ns + " instead of " + ref->namespaced;
    if (refs.conversation_id != ref->refs.conversation_id || refs.message_id != ref->refs.message_id)
        return "conversation or message id differs";
    // Every id the reference checks is checked (a repeated member's earlier ids too).
    for (const auto& id : ref->refs.upload_file_ids)
        if (std::find(refs.upload_file_ids.begin(), refs.upload_file_ids.end(), id) == refs.upload_file_ids.end())
            return "upload_file_id " + id + " not found";
    return "";
}

} // namespace gw::test
