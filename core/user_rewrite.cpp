#include "core/user_rewrite.hpp"

#include "core/multipart.hpp"
#include "core/text.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace gw::core {

namespace json = boost::json;

std::string namespaced_user(std::string_view tenant, std::string_view user)
{
    if (user.empty()) user = default_user;
    std::string out;
    out.reserve(tenant.size() + 1 + user.size());
    out.append(tenant).append(1, ':').append(user);
    return out;
}

namespace {

void collect_file_ids(const json::value& v, std::vector<std::string>& out)
{
    if (const auto* o = v.if_object()) {
        for (const auto& [k, member] : *o) {
            if (k == "upload_file_id" && member.is_string())
                out.emplace_back(member.get_string());
            else
                collect_file_ids(member, out);
        }
    } else if (const auto* a = v.if_array()) {
        for (const auto& e : *a) collect_file_ids(e, out);
    }
}

} // namespace

std::optional<std::string> rewrite_json_user(std::string_view body, std::string_view tenant, std::string* namespaced,
                                             json_references* refs)
{
    json::error_code ec;
    json::parse_options limits;
    limits.max_depth = 64;
    // The document lives for this call only: its nodes come from a buffer on the stack (a
    // request body of a few hundred bytes allocates nothing), a larger one from blocks the
    // resource frees all at once.
    unsigned char first_block[4096];
    json::monotonic_resource nodes(first_block, sizeof first_block);
    auto doc = json::parse(body, ec, &nodes, limits);
    if (ec || !doc.is_object()) return std::nullopt;
    auto& o = doc.get_object();
    std::string user;
    if (auto* v = o.if_contains("user")) {
        if (v->is_string())
            user = std::string(v->get_string());
        else if (!v->is_null())
            user = json::serialize(*v); // Dify would use str(value)
    }
    auto value = namespaced_user(tenant, user);
    if (refs) {
        if (auto* c = o.if_contains("conversation_id"); c && c->is_string()) refs->conversation_id = std::string(c->get_string());
        if (auto* m = o.if_contains("message_id"); m && m->is_string()) refs->message_id = std::string(m->get_string());
        collect_file_ids(doc, refs->upload_file_ids);
    }
    o["user"] = value;
    if (namespaced) *namespaced = std::move(value);
    return json::serialize(doc);
}

std::string form_encode(std::string_view s)
{
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xF]);
        }
    }
    return out;
}

std::string rewrite_query_user(std::string_view query, std::string_view tenant)
{
    return rewrite_query_param(query, "user", tenant);
}

std::string rewrite_query_param(std::string_view query, std::string_view name, std::string_view tenant,
                                std::initializer_list<std::string_view> dropped, bool add_if_absent)
{
    std::string out;
    bool found = false;
    const std::string encoded_name = form_encode(name);
    for_each_part(query, '&', [&](std::string_view part) {
        if (part.empty()) return;
        auto eq = part.find('=');
        auto key = form_decode(part.substr(0, eq)).value_or(std::string(part.substr(0, eq)));
        if (std::find(dropped.begin(), dropped.end(), key) != dropped.end()) return;
        if (!out.empty()) out.push_back('&');
        if (key == name) {
            found = true;
            std::string value;
            if (eq != std::string_view::npos)
                value = form_decode(part.substr(eq + 1)).value_or(std::string(part.substr(eq + 1)));
            out += encoded_name + "=" + form_encode(namespaced_user(tenant, value));
        } else {
            out.append(part);
        }
    });
    if (!found && add_if_absent) out += (out.empty() ? "" : "&") + encoded_name + "=" + form_encode(namespaced_user(tenant, ""));
    return out;
}

std::size_t body_splice::size() const
{
    std::size_t n = 0;
    for (const auto& p : pieces) n += p.text.empty() ? p.length : p.text.size();
    return n;
}

std::string body_splice::flatten(std::string_view original) const
{
    std::string out;
    out.reserve(size());
    for (const auto& p : pieces) {
        if (p.text.empty())
            out.append(original.substr(p.offset, p.length));
        else
            out += p.text;
    }
    return out;
}

std::string guess_mime_type(std::string_view filename)
{
    static const std::vector<std::pair<std::string_view, std::string_view>> types{
        {"pdf", "application/pdf"}, {"txt", "text/plain"}, {"md", "text/markdown"}, {"markdown", "text/markdown"},
        {"html", "text/html"}, {"htm", "text/html"}, {"csv", "text/csv"}, {"json", "application/json"},
        {"xml", "application/xml"}, {"doc", "application/msword"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"xls", "application/vnd.ms-excel"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"ppt", "application/vnd.ms-powerpoint"},
        {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
        {"eml", "message/rfc822"}, {"epub", "application/epub+zip"}, {"png", "image/png"}, {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"}, {"gif", "image/gif"}, {"webp", "image/webp"}, {"svg", "image/svg+xml"},
        {"mp3", "audio/mpeg"}, {"m4a", "audio/mp4"}, {"wav", "audio/wav"}, {"amr", "audio/amr"},
        {"mpga", "audio/mpeg"}, {"mp4", "video/mp4"}, {"mov", "video/quicktime"}, {"mpeg", "video/mpeg"},
        {"webm", "video/webm"}};
    auto dot = filename.rfind('.');
    if (dot == std::string_view::npos) return "application/octet-stream";
    auto ext = to_lower(filename.substr(dot + 1));
    auto it = std::find_if(types.begin(), types.end(), [&](const auto& t) { return t.first == ext; });
    return it == types.end() ? "application/octet-stream" : std::string(it->second);
}

std::optional<body_splice> rewrite_multipart_user(std::string_view body, std::string_view boundary, std::string_view tenant)
{
    auto form = parse_multipart(body, boundary);
    if (!form.error.empty()) return std::nullopt;

    // Edits, as (offset in body, bytes removed, text inserted), in body order.
    struct edit
    {
        std::size_t at, remove;
        std::string insert;
    };
    std::vector<edit> edits;
    bool has_user = false;
    for (const auto& part : form.parts) {
        auto data_at = static_cast<std::size_t>(part.data.data() - body.data());
        if (part.name == "user" && !part.filename) {
            if (part.content_type) return std::nullopt;
            has_user = true;
            edits.push_back({data_at, part.data.size(), namespaced_user(tenant, part.data)});
        } else if (part.filename && !part.content_type) {
            auto headers_end = static_cast<std::size_t>(part.headers.data() - body.data()) + part.headers.size();
            edits.push_back({headers_end, 0, "\r\nContent-Type: " + guess_mime_type(*part.filename)});
        }
    }
    if (!has_user) {
        auto first = body.find("--" + std::string(boundary));
        edits.insert(edits.begin(), {first, 0,
                                     "--" + std::string(boundary) +
                                         "\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n" +
                                         namespaced_user(tenant, "") + "\r\n"});
    }
    body_splice out;
    std::size_t pos = 0;
    for (auto& e : edits) {
        if (e.at > pos) out.pieces.push_back({pos, e.at - pos, {}});
        if (!e.insert.empty()) out.pieces.push_back({0, 0, std::move(e.insert)});
        pos = e.at + e.remove;
    }
    if (pos < body.size()) out.pieces.push_back({pos, body.size() - pos, {}});
    return out;
}

} // namespace gw::core
