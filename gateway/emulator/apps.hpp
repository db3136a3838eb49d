// The Dify apps the emulator serves: their keys, modes, limits and feature switches,
// read from a JSON list (built-in set or --apps FILE).
#pragma once

#include <string>
#include <vector>

namespace gw::emulator {

// One variable of an app's `user_input_form`.
struct input_variable
{
    std::string variable;
    std::string type = "text-input"; // text-input, paragraph, select, number
    bool required = false;
    int max_length = 0;              // 0 = no limit
    std::vector<std::string> options; // for select
};

struct app_def
{
    std::string key;  // "app-" + 24 letters/digits
    std::string mode; // chat, agent-chat, advanced-chat, workflow, completion
    std::string name;
    std::string description;
    std::string id;          // UUID; derived from the key when not given
    std::string workflow_id; // workflow and chatflow apps: the published version's id
    int max_active_requests = 0; // 0 = unlimited (the self-hosted default)
    bool enable_api = true;      // false: 403 "The app's API service has been disabled."
    bool speech_to_text = true;
    bool text_to_speech = true;
    bool file_upload = true;
    bool suggested_questions = true;
    std::vector<input_variable> inputs;

    bool is_chat() const { return mode == "chat" || mode == "agent-chat" || mode == "advanced-chat"; }
    bool is_workflow_engine() const { return mode == "workflow" || mode == "advanced-chat"; }
};

// Parses a JSON (with comments) list of apps; throws std::runtime_error listing every problem.
std::vector<app_def> parse_apps(std::string_view json_text);
std::vector<app_def> load_apps_file(const std::string& path);
// The built-in set documented in the README (config/emulator_apps.json).
std::vector<app_def> builtin_apps();

} // namespace gw::emulator
