#include "gateway/emulator/apps.hpp"

#include "config/json_reader.hpp"
#include "core/key_hash.hpp"
#include "emulator_builtin_apps.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace gw::emulator {

namespace json = boost::json;

namespace {

// A stable UUID-shaped id derived from a seed string.
std::string derived_uuid(std::string_view seed)
{
    auto h = core::sha256_hex(seed);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-8" + h.substr(17, 3) + "-" + h.substr(20, 12);
}

bool valid_app_key(std::string_view key)
{
    if (!key.starts_with("app-") || key.size() != 28) return false;
    for (char c : key.substr(4))
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
    return true;
}

input_variable read_input(config::json_reader r, config::problems& p)
{
    input_variable v;
    r.get("variable", v.variable, true);
    r.get("type", v.type);
    r.get("required", v.required);
    r.get("max_length", v.max_length, 0, 1'000'000);
    r.get("options", v.options);
    r.finish();
    if (v.type != "text-input" && v.type != "paragraph" && v.type != "select" && v.type != "number")
        p.add(r.path() + ".type", "must be text-input, paragraph, select or number");
    return v;
}

app_def read_app(config::json_reader r, config::problems& p)
{
    app_def a;
    r.get("key", a.key, true);
    r.get("mode", a.mode, true);
    r.get("name", a.name, true);
    r.get("description", a.description);
    r.get("id", a.id);
    r.get("workflow_id", a.workflow_id);
    r.get("max_active_requests", a.max_active_requests, 0, 1'000'000);
    r.get("enable_api", a.enable_api);
    r.get("speech_to_text", a.speech_to_text);
    r.get("text_to_speech", a.text_to_speech);
    r.get("file_upload", a.file_upload);
    r.get("suggested_questions", a.suggested_questions);
    if (auto* v = r.member("inputs")) {
        auto path = r.path() + ".inputs";
        if (!v->is_array()) {
            p.add(path, "must be an array");
        } else {
            for (std::size_t i = 0; i < v->get_array().size(); ++i)
                a.inputs.push_back(read_input(config::json_reader(v->get_array()[i], config::index_path(path, i), p), p));
        }
    }
    r.finish();
    if (!a.key.empty() && !valid_app_key(a.key)) p.add(r.path() + ".key", "must be app- followed by 24 letters or digits");
    static const std::set<std::string> modes{"chat", "agent-chat", "advanced-chat", "workflow", "completion"};
    if (!a.mode.empty() && !modes.contains(a.mode))
        p.add(r.path() + ".mode", "must be chat, agent-chat, advanced-chat, workflow or completion");
    if (a.id.empty()) a.id = derived_uuid("app:" + a.key);
    if (a.workflow_id.empty()) a.workflow_id = derived_uuid("workflow:" + a.key);
    if (a.description.empty()) a.description = "Served by dify-emulator";
    return a;
}

} // namespace

std::vector<app_def> parse_apps(std::string_view text)
{
    json::parse_options opts;
    opts.allow_comments = true;
    opts.allow_trailing_commas = true;
    json::error_code ec;
    auto doc = json::parse(text, ec, {}, opts);
    if (ec) throw std::runtime_error("apps: invalid JSON: " + ec.message());
    if (!doc.is_array()) throw std::runtime_error("apps: must be a JSON array of apps");
    config::problems p;
    std::vector<app_def> apps;
    std::set<std::string> keys;
    for (std::size_t i = 0; i < doc.get_array().size(); ++i) {
        auto path = config::index_path("apps", i);
        apps.push_back(read_app(config::json_reader(doc.get_array()[i], path, p), p));
        if (!keys.insert(apps.back().key).second) p.add(path + ".key", "is used by another app");
    }
    if (apps.empty()) p.add("apps", "must list at least one app");
    if (!p.empty()) {
        std::string msg;
        for (const auto& line : p.list()) msg += (msg.empty() ? "" : "\n") + line;
        throw std::runtime_error(msg);
    }
    return apps;
}

std::vector<app_def> load_apps_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open file");
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_apps(ss.str());
}

std::vector<app_def> builtin_apps()
{
    return parse_apps(builtin_apps_json);
}

} // namespace gw::emulator
