#include "core/user_rewrite.hpp"

#include "core/json_walk.hpp"
#include "core/multipart.hpp"
#include "core/text.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>

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

// A body deeper than this is refused.
constexpr std::size_t max_body_depth = 64;

// What the rewrite needs of a JSON body, as json_walk tells it: where each top-level
// `user` value lies, and the last one's value (Python's json, which Dify reads bodies
// with, keeps a repeated member's last value); and what the body refers to.
class body_reader
{
public:
    struct span
    {
        std::size_t from, to; // a value's bytes in the body
    };

    body_reader(std::string_view text, const json_walk<body_reader>& walk) : text_(text), walk_(walk) {}

    // json_walk's handler.
    void begin(bool object)
    {
        if (depth_ == 0) top_is_object_ = object;
        file_id_value(false);
        odd_file_id_here_[++depth_] = false;
    }
    void end()
    {
        if (odd_file_id_here_[depth_]) odd_file_id_ = true;
        if (--depth_ == 1) member_done(false, {});
    }
    void key(std::string_view name)
    {
        file_id_next_ = name == "upload_file_id";
        if (depth_ != 1) return;
        ++members_;
        member_ = name == "user"              ? member::user
                  : name == "conversation_id" ? member::conversation
                  : name == "message_id"      ? member::message
                                              : member::none;
        if (member_ == member::user) user_from_ = start_of_value(walk_.offset());
    }
    void string(std::string_view s)
    {
        if (file_id_next_) refs_.upload_file_ids.emplace_back(s);
        file_id_value(false);
        if (depth_ == 1) member_done(true, s);
    }
    bool wants_number() const { return false; }
    void integer(std::int64_t) {}
    void real(double) {}
    void other() // a number, true, false or null
    {
        file_id_value(!just_read_null());
        if (depth_ == 1) member_done(false, {});
    }

    bool top_is_object() const { return top_is_object_; }
    std::size_t members() const { return members_; }
    const boost::container::small_vector<span, 2>& user_values() const { return users_; }
    // The last `user`: a string's value, or a value of another type as JSON text; "" for
    // null or none.
    const std::string& user() const { return user_; }
    bool user_is_string() const { return user_is_string_; }
    json_references& refs() { return refs_; }
    // A reference Dify would read that is neither a string nor null: a number Dify's str()
    // would turn into an id the gateway never checked.
    bool odd_reference() const { return odd_file_id_ || odd_conversation_ || odd_message_; }

private:
    enum class member { none, user, conversation, message };

    // From just past a member's name: past the colon and the whitespace around it.
    std::size_t start_of_value(std::size_t at) const
    {
        const auto skip_space = [this](std::size_t i) {
            while (i < text_.size() && (text_[i] == ' ' || text_[i] == '\t' || text_[i] == '\n' || text_[i] == '\r')) ++i;
            return i;
        };
        at = skip_space(at);
        if (at < text_.size() && text_[at] == ':') ++at; // else the walk fails there
        return skip_space(at);
    }

    // An upload_file_id's value has been read, or begins (a container, read through): an
    // object's last one counts, as in Python.
    void file_id_value(bool odd)
    {
        if (std::exchange(file_id_next_, false)) odd_file_id_here_[depth_] = odd;
    }
    // Whether the value other() reports is null: the only one of its values that ends in 'l'.
    bool just_read_null() const { return walk_.offset() >= 4 && text_.substr(walk_.offset() - 4, 4) == "null"; }

    // A top-level member's value has been read (its string value, if it is one).
    void member_done(bool is_string, std::string_view s)
    {
        const auto reference = [&](std::string& id, bool& odd) { // the last one counts, as in Python
            id.assign(is_string ? s : std::string_view{});
            odd = !is_string && !just_read_null();
        };
        switch (std::exchange(member_, member::none)) {
        case member::none: break;
        case member::user: {
            const span value{user_from_, walk_.offset()};
            users_.push_back(value);
            const auto text = text_.substr(value.from, value.to - value.from);
            user_is_string_ = is_string;
            user_.assign(is_string ? s : text == "null" ? std::string_view{} : text);
            break;
        }
        case member::conversation: reference(refs_.conversation_id, odd_conversation_); break;
        case member::message: reference(refs_.message_id, odd_message_); break;
        }
    }

    std::string_view text_;
    const json_walk<body_reader>& walk_;
    std::size_t depth_ = 0;
    bool top_is_object_ = false;
    std::size_t members_ = 0;     // of the top-level object
    member member_ = member::none; // what the top-level value being read is
    bool file_id_next_ = false;   // the value about to be read is an upload_file_id's
    bool odd_file_id_ = false;    // an object's (last) upload_file_id is a number or a boolean
    std::array<bool, max_body_depth + 2> odd_file_id_here_{}; // so far in the object open at each depth
    bool odd_conversation_ = false, odd_message_ = false; // the last one is neither string nor null
    std::size_t user_from_ = 0;
    boost::container::small_vector<span, 2> users_;
    std::string user_;
    bool user_is_string_ = false;
    json_references refs_;
};

} // namespace

std::optional<std::string> rewrite_json_user(std::string_view body, std::string_view tenant, std::string* namespaced,
                                             json_references* refs)
{
    json_walk<body_reader> walk(max_body_depth);
    body_reader reader(body, walk);
    if (!walk.run(body, reader) || !reader.top_is_object() || reader.odd_reference()) return std::nullopt;
    std::string user = reader.user();
    if (!reader.user_is_string() && !user.empty()) {
        // Another type: its compact JSON text, as before the splice (Dify would use str()).
        json::error_code ec;
        json::parse_options limits;
        limits.max_depth = max_body_depth;
        auto v = json::parse(user, ec, {}, limits);
        if (ec) return std::nullopt;
        user = json::serialize(v);
    }
    auto value = namespaced_user(tenant, user);
    std::string out;
    const auto& users = reader.user_values();
    if (users.empty()) { // one added first: the walk found an object, its bracket is the first byte that is not whitespace
        const std::size_t open = body.find('{') + 1;
        out.reserve(body.size() + value.size() + 16);
        out.append(body.substr(0, open)).append(R"("user":)");
        append_json_string(out, value);
        if (reader.members() > 0) out += ',';
        out.append(body.substr(open));
    } else {
        // The last one, which Python reads, gets the value; earlier ones become null (the
        // value again in each would let a body of many `user`s grow without bound).
        out.reserve(body.size() + value.size() + 16 + 4 * users.size());
        std::size_t at = 0;
        for (const auto& u : users) {
            out.append(body.substr(at, u.from - at));
            if (&u == &users.back())
                append_json_string(out, value);
            else
                out.append("null");
            at = u.to;
        }
        out.append(body.substr(at));
    }
    if (refs) *refs = std::move(reader.refs());
    if (namespaced) *namespaced = std::move(value);
    return out;
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
