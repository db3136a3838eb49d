// Generation endpoints: chat/completion/workflow runs (blocking and streaming), the stop
// endpoints, and workflow run lookups. See reference §3.1-3.4, §4, §5.3.
#include "gateway/emulator/dify_api.hpp"
#include "gateway/emulator/generation.hpp"

#include "core/text.hpp"

#include <boost/json.hpp>

namespace gw::emulator {

namespace json = boost::json;

namespace {

std::string input_text(const json::value& v)
{
    if (v.is_string()) return std::string(v.get_string());
    return json::serialize(v);
}

// Checks `inputs` against the app's user_input_form (reference §3.1 messages).
std::optional<reply> validate_inputs(const app_def& app, const json::object& inputs)
{
    for (const auto& var : app.inputs) {
        auto* v = inputs.if_contains(var.variable);
        bool empty = !v || v->is_null() || (v->is_string() && v->get_string().empty());
        if (empty) {
            if (var.required) return invalid_param(var.variable + " is required in input form");
            continue;
        }
        if (var.type == "number") {
            bool ok = v->is_number();
            if (v->is_string()) {
                std::string s(v->get_string());
                char* end = nullptr;
                std::strtod(s.c_str(), &end);
                ok = end && *end == '\0';
            }
            if (!ok) return invalid_param(var.variable + " in input form must be a valid number");
            continue;
        }
        if (!v->is_string()) return invalid_param("Invalid input type for [" + var.variable + "]");
        std::string_view s = v->get_string();
        if (var.type == "select" && std::find(var.options.begin(), var.options.end(), s) == var.options.end()) {
            std::string list;
            for (const auto& o : var.options) list += (list.empty() ? "'" : ", '") + o + "'";
            return invalid_param(var.variable + " in input form must be one of the following: [" + list + "]");
        }
        if (var.max_length > 0 && static_cast<int>(s.size()) > var.max_length)
            return invalid_param(var.variable + " in input form must be less than " + std::to_string(var.max_length) + " characters");
    }
    return std::nullopt;
}

std::string describe_inputs(const json::object& inputs)
{
    std::string out;
    for (const auto& [k, v] : inputs) out += (out.empty() ? "" : ", ") + std::string(k) + "=" + input_text(v);
    return out;
}

} // namespace

reply dify_api::chat_messages(call& c)
{
    if (auto wrong = mode_mismatch(c.app, "chat")) return *wrong;
    return generate(c, "chat");
}

reply dify_api::completion_messages(call& c)
{
    if (auto wrong = mode_mismatch(c.app, "completion")) return *wrong;
    return generate(c, "completion");
}

reply dify_api::workflows_run(call& c)
{
    if (auto wrong = mode_mismatch(c.app, "workflow")) return *wrong;
    return generate(c, "workflow");
}

reply dify_api::workflows_run_version(call& c)
{
    if (auto wrong = mode_mismatch(c.app, "workflow")) return *wrong;
    const auto& id = c.params[0];
    if (!is_uuid(id)) return error_reply(400, "bad_request", "Invalid workflow_id format: '" + id + "'. ");
    if (id != c.app.workflow_id) return not_found("Workflow not found with id: " + id);
    return generate(c, "workflow");
}

reply dify_api::generate(call& c, const std::string& kind)
{
    const bool chat = kind == "chat";
    const char* model = chat ? "ChatRequestPayload" : kind == "completion" ? "CompletionRequestPayload" : "WorkflowRunPayload";
    auto& body = c.body;

    // Schema (pydantic in Dify 1.13).
    std::string query;
    if (auto* q = body.if_contains("query")) {
        if (!q->is_string()) return pydantic_error(model, "query", "Input should be a valid string", "string_type");
        query = std::string(q->get_string());
    } else if (chat) {
        return pydantic_missing(model, "query");
    }
    auto* inputs_v = body.if_contains("inputs");
    if (!inputs_v) return pydantic_missing(model, "inputs");
    if (!inputs_v->is_object()) return pydantic_error(model, "inputs", "Input should be a valid dictionary", "dict_type");
    bool streaming = false;
    if (auto* m = body.if_contains("response_mode"); m && !m->is_null()) {
        if (!m->is_string() || (m->get_string() != "blocking" && m->get_string() != "streaming"))
            return pydantic_error(model, "response_mode", "Input should be 'blocking' or 'streaming'", "literal_error");
        streaming = m->get_string() == "streaming";
    }
    std::string conversation_id;
    if (chat) {
        if (auto* v = body.if_contains("conversation_id"); v && !v->is_null()) {
            if (!v->is_string()) return pydantic_error(model, "conversation_id", "Input should be a valid string", "string_type");
            conversation_id = std::string(core::trim(v->get_string()));
            if (!conversation_id.empty() && !is_uuid(conversation_id))
                return pydantic_error(model, "conversation_id", "Value error, conversation_id must be a valid UUID", "value_error");
        }
    }
    // Handler checks.
    if (chat && query.empty()) return invalid_param("query is required");
    if (c.app.mode == "agent-chat" && !streaming) return invalid_param("Agent Chat App does not support blocking mode");
    json::object inputs = inputs_v->get_object();
    if (auto err = validate_inputs(c.app, inputs)) return *err;

    conversation_rec* conv = nullptr;
    if (chat && !conversation_id.empty()) {
        conv = store_->find_conversation(c.app, *c.user, conversation_id);
        if (!conv || conv->hidden) return not_found("Conversation Not Exists.");
    }

    // Files: local_file references must exist (reference §7).
    std::vector<file_rec*> files;
    if (auto* f = body.if_contains("files"); f && f->is_array() && (c.app.file_upload || kind == "workflow")) {
        for (const auto& item : f->get_array()) {
            if (!item.is_object()) return invalid_param("Invalid file reference");
            const auto& o = item.get_object();
            auto* tm = o.if_contains("transfer_method");
            if (!tm || !tm->is_string()) continue; // silently dropped
            if (tm->get_string() != "local_file") continue;
            auto* id = o.if_contains("upload_file_id");
            if (!id || !id->is_string()) return invalid_param("Invalid upload file id");
            if (!is_uuid(id->get_string())) return invalid_param("Invalid upload file id format");
            auto* rec = store_->find_file(id->get_string());
            if (!rec) return invalid_param("Invalid upload file");
            files.push_back(rec);
        }
    }

    // App concurrency limit (reference §5.3): a 400 invalid_param, not a 429.
    auto too_many = [&] {
        return invalid_param(
            "Too many requests. Please try again later. The current maximum concurrent requests allowed for `" +
            c.app.id + "` is `" + std::to_string(c.app.max_active_requests) + "`."
        );
    };
    auto slot = store_->try_acquire_slot(c.app);
    if (!slot) return too_many();
    if (streaming && c.app.is_workflow_engine()) {
        // Dify 1.13 enters the slot a second time inside a context that releases it right
        // after enqueueing: a limit of 1 fails every such request; others barely count.
        auto second = store_->try_acquire_slot(c.app);
        if (!second) return too_many();
        slot.reset();
    }

    generation_input in;
    in.mode = c.app.mode;
    in.task_id = store_->new_uuid();
    in.created_at = store_->now();
    in.inputs = inputs;
    in.user_session = c.user->session_id;
    in.end_user_id = c.user->id;
    in.app_id = c.app.id;
    in.query = query;
    in.workflow_id = c.app.workflow_id;

    std::string answer;
    std::string history_text;
    if (chat) {
        if (!conv) {
            conv = &store_->create_conversation(c.app, *c.user, inputs, false);
            bool auto_name = true;
            if (auto* a = body.if_contains("auto_generate_name"); a && a->is_bool()) auto_name = a->get_bool();
            if (auto_name) conv->name = query.substr(0, 40);
        }
        std::size_t turn = conv->messages.size() + 1;
        answer = "Turn " + std::to_string(turn) + ". You said: \"" + query + "\".";
        if (turn > 1) answer += " Earlier you said: \"" + conv->messages.back().query + "\".";
        for (const auto& m : conv->messages) history_text += m.query + m.answer;
        if (!conv->inputs.empty()) answer += " Inputs: " + describe_inputs(conv->inputs) + ".";
        in.conversation_id = conv->id;
    } else if (kind == "completion") {
        answer = "Completion for \"" + query + "\".";
        if (!inputs.empty()) answer += " Inputs: " + describe_inputs(inputs) + ".";
        conv = &store_->create_conversation(c.app, *c.user, inputs, true);
    } else {
        answer = "Workflow summary of " + (inputs.empty() ? std::string("no inputs") : describe_inputs(inputs)) + ".";
    }
    if (!files.empty()) {
        answer += " Files:";
        for (auto* f : files) {
            answer += " " + f->name + " (" + std::to_string(f->data.size()) + " bytes)";
            f->referenced = true;
        }
        answer += ".";
    }
    in.answer = answer;
    in.use.prompt_tokens = 8 + count_tokens(query) + count_tokens(describe_inputs(inputs)) + count_tokens(history_text);
    in.use.completion_tokens = count_tokens(answer);

    if (conv) {
        message_rec m;
        m.id = store_->new_uuid();
        m.conversation_id = conv->id;
        m.query = query;
        m.inputs = inputs;
        m.created_at = in.created_at;
        m.answer = streaming ? "" : answer;
        for (auto* f : files) m.file_ids.push_back(f->id);
        conv->messages.push_back(std::move(m));
        conv->updated_at = in.created_at;
        in.message_id = conv->messages.back().id;
    }
    if (c.app.is_workflow_engine()) {
        workflow_run_rec run;
        run.id = store_->new_uuid();
        run.app_id = c.app.id;
        run.workflow_id = c.app.workflow_id;
        run.inputs = inputs;
        run.created_at = in.created_at;
        run.end_user_id = c.user->id;
        run.end_user_session = c.user->session_id;
        run.total_tokens = in.use.total();
        run.total_steps = 3;
        if (!streaming) {
            run.status = "succeeded";
            run.outputs = json::object{{kind == "workflow" ? "summary" : "answer", answer}};
            run.finished_at = in.created_at;
            run.elapsed_time = 0.5;
        }
        in.workflow_run_id = store_->add_run(std::move(run)).id;
    }

    if (!streaming) {
        reply r = kind == "workflow" ? generate_reply(blocking_workflow_body(in, in.created_at))
                                     : generate_reply(blocking_message_body(in));
        r.delay = opts_.token_delay * static_cast<long>(generation_event_count(in));
        r.hold = std::move(slot);
        return r;
    }

    // Streaming: record the outcome in the store when the generation ends.
    std::weak_ptr<store> weak = store_;
    auto finish = [weak, msg_id = in.message_id, run_id = in.workflow_run_id, task_id = in.task_id,
                   out_key = std::string(kind == "workflow" ? "summary" : "answer"),
                   app = &c.app](const std::string& text, bool stopped) {
        auto st = weak.lock();
        if (!st) return;
        st->remove_task(task_id);
        if (!msg_id.empty())
            if (auto* m = st->find_message_any_user(*app, msg_id)) m->answer = text;
        if (auto* run = st->find_run(run_id)) {
            run->status = stopped ? "stopped" : "succeeded";
            run->outputs = stopped ? json::object() : json::object{{out_key, text}};
            run->finished_at = st->now();
            run->elapsed_time = 0.5;
        }
    };
    auto stream = make_generation_stream(in, [this] { return store_->new_uuid(); }, std::move(finish));
    store_->add_task(in.task_id, task_rec{c.app.id, c.user->session_id, kind, stream});
    reply r;
    r.content_type = "text/event-stream; charset=utf-8";
    r.stream = std::move(stream);
    r.hold = std::move(slot);
    return r;
}

reply dify_api::stop_task(call& c, const std::string& kind)
{
    if (auto wrong = mode_mismatch(c.app, kind)) return *wrong;
    // Always success, whatever the task (reference §3.3); only matching tasks stop.
    if (auto* t = store_->find_task(c.params[0]); t && t->app_id == c.app.id) {
        bool user_ok = kind == "workflow" || t->user == c.user->session_id;
        if (user_ok) {
            if (auto s = t->stream.lock()) s->request_stop();
        }
    }
    return json_reply(200, json::object{{"result", "success"}});
}

reply dify_api::stop_chat(call& c)
{
    return stop_task(c, "chat");
}

reply dify_api::stop_completion(call& c)
{
    return stop_task(c, "completion");
}

reply dify_api::stop_workflow(call& c)
{
    return stop_task(c, "workflow");
}

reply dify_api::workflow_run_detail(call& c)
{
    auto* run = store_->find_run(c.params[0]);
    if (!run || run->app_id != c.app.id) return not_found("Workflow run not found.");
    json::object o;
    o["id"] = run->id;
    o["workflow_id"] = run->workflow_id;
    o["status"] = run->status;
    o["inputs"] = json::serialize(run->inputs); // a JSON-encoded string, as Dify returns it
    o["outputs"] = run->outputs;
    o["error"] = nullptr;
    o["total_steps"] = run->total_steps;
    o["total_tokens"] = run->total_tokens;
    o["created_at"] = run->created_at;
    o["finished_at"] = run->finished_at ? json::value(*run->finished_at) : json::value(nullptr);
    o["elapsed_time"] = run->elapsed_time;
    return json_reply(200, o);
}

reply dify_api::workflow_logs(call& c)
{
    auto page = std::max(1, std::atoi(c.req.query_param("page").value_or("1").c_str()));
    auto limit = std::atoi(c.req.query_param("limit").value_or("20").c_str());
    if (limit < 1 || limit > 100) return invalid_param("limit must be between 1 and 100");
    auto status = c.req.query_param("status");
    std::vector<const workflow_run_rec*> runs;
    for (auto* r : store_->runs_of(c.app))
        if (!status || r->status == *status) runs.push_back(r);
    json::array data;
    std::size_t begin = static_cast<std::size_t>(page - 1) * limit;
    for (std::size_t i = begin; i < runs.size() && i < begin + limit; ++i) {
        const auto* r = runs[i];
        json::object wr{{"id", r->id}, {"version", "1"}, {"status", r->status}, {"triggered_from", "app-run"},
                        {"error", nullptr}, {"elapsed_time", r->elapsed_time}, {"total_tokens", r->total_tokens},
                        {"total_steps", r->total_steps}, {"created_at", r->created_at},
                        {"finished_at", r->finished_at ? json::value(*r->finished_at) : json::value(nullptr)},
                        {"exceptions_count", 0}};
        json::object eu{{"id", r->end_user_id}, {"type", "service-api"}, {"is_anonymous", false}, {"session_id", r->end_user_session}};
        data.push_back(json::object{{"id", r->id}, {"workflow_run", wr}, {"details", nullptr}, {"created_from", "service-api"},
                                    {"created_by_role", "end_user"}, {"created_by_account", nullptr},
                                    {"created_by_end_user", eu}, {"created_at", r->created_at}});
    }
    return json_reply(200, json::object{{"page", page}, {"limit", limit}, {"total", runs.size()},
                                        {"has_more", begin + limit < runs.size()}, {"data", data}});
}

} // namespace gw::emulator
