// Generation endpoints: chat/completion/workflow runs (blocking and streaming), the stop
// endpoints, and workflow run lookups.
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

// Checks `inputs` against the app's user_input_form.
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

// A generate call after validation: what to run and for whom.
struct generate_request
{
    std::string kind; // "chat", "completion", "workflow"
    bool streaming = false;
    std::string query;
    json::object inputs;
    conversation_rec* conversation = nullptr; // chat: the one being continued
    std::vector<file_rec*> files;
    bool auto_name = true;
};

namespace {

// Schema checks in the order Dify 1.13's pydantic models apply them.
std::optional<reply> parse_schema(const json::object& body, generate_request& g)
{
    const bool chat = g.kind == "chat";
    const char* model = chat ? "ChatRequestPayload" : g.kind == "completion" ? "CompletionRequestPayload" : "WorkflowRunPayload";
    if (auto* q = body.if_contains("query")) {
        if (!q->is_string()) return pydantic_error(model, "query", "Input should be a valid string", "string_type");
        g.query = std::string(q->get_string());
    } else if (chat) {
        return pydantic_missing(model, "query");
    }
    auto* inputs = body.if_contains("inputs");
    if (!inputs) return pydantic_missing(model, "inputs");
    if (!inputs->is_object()) return pydantic_error(model, "inputs", "Input should be a valid dictionary", "dict_type");
    g.inputs = inputs->get_object();
    if (auto* m = body.if_contains("response_mode"); m && !m->is_null()) {
        if (!m->is_string() || (m->get_string() != "blocking" && m->get_string() != "streaming"))
            return pydantic_error(model, "response_mode", "Input should be 'blocking' or 'streaming'", "literal_error");
        g.streaming = m->get_string() == "streaming";
    }
    if (auto* a = body.if_contains("auto_generate_name"); a && a->is_bool()) g.auto_name = a->get_bool();
    return std::nullopt;
}

// The chat `conversation_id` ("" = a new conversation).
std::optional<reply> parse_conversation_id(const json::object& body, std::string& out)
{
    auto* v = body.if_contains("conversation_id");
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_string())
        return pydantic_error("ChatRequestPayload", "conversation_id", "Input should be a valid string", "string_type");
    out = std::string(core::trim(v->get_string()));
    if (!out.empty() && !is_uuid(out))
        return pydantic_error("ChatRequestPayload", "conversation_id", "Value error, conversation_id must be a valid UUID", "value_error");
    return std::nullopt;
}

// `local_file` references must name uploaded files; other items pass.
std::optional<reply> resolve_files(const json::value* files, store& st, std::vector<file_rec*>& out)
{
    if (!files || !files->is_array()) return std::nullopt;
    for (const auto& item : files->get_array()) {
        if (!item.is_object()) return invalid_param("Invalid file reference");
        const auto& o = item.get_object();
        auto* tm = o.if_contains("transfer_method");
        if (!tm || !tm->is_string() || tm->get_string() != "local_file") continue; // remote or silently dropped
        auto* id = o.if_contains("upload_file_id");
        if (!id || !id->is_string()) return invalid_param("Invalid upload file id");
        if (!is_uuid(id->get_string())) return invalid_param("Invalid upload file id format");
        auto* rec = st.find_file(id->get_string());
        if (!rec) return invalid_param("Invalid upload file");
        out.push_back(rec);
    }
    return std::nullopt;
}

reply too_many_requests(const app_def& app)
{
    return invalid_param(
        "Too many requests. Please try again later. The current maximum concurrent requests allowed for `" + app.id +
        "` is `" + std::to_string(app.max_active_requests) + "`."
    );
}

// The deterministic answer: it reveals the turn, the previous query, inputs and files.
std::string compose_answer(const generate_request& g)
{
    std::string answer;
    if (g.kind == "chat") {
        const auto& history = g.conversation->messages;
        answer = "Turn " + std::to_string(history.size() + 1) + ". You said: \"" + g.query + "\".";
        if (!history.empty()) answer += " Earlier you said: \"" + history.back().query + "\".";
        if (!g.conversation->inputs.empty()) answer += " Inputs: " + describe_inputs(g.conversation->inputs) + ".";
    } else if (g.kind == "completion") {
        answer = "Completion for \"" + g.query + "\".";
        if (!g.inputs.empty()) answer += " Inputs: " + describe_inputs(g.inputs) + ".";
    } else {
        answer = "Workflow summary of " + (g.inputs.empty() ? std::string("no inputs") : describe_inputs(g.inputs)) + ".";
    }
    if (!g.files.empty()) {
        answer += " Files:";
        for (const auto* f : g.files) answer += " " + f->name + " (" + std::to_string(f->data.size()) + " bytes)";
        answer += ".";
    }
    return answer;
}

std::int64_t prompt_tokens(const generate_request& g)
{
    std::string history;
    if (g.conversation)
        for (const auto& m : g.conversation->messages) history += m.query + m.answer;
    return 8 + count_tokens(g.query) + count_tokens(describe_inputs(g.inputs)) + count_tokens(history);
}

} // namespace

reply dify_api::generate(call& c, const std::string& kind)
{
    generate_request g;
    g.kind = kind;
    if (auto err = parse_schema(c.body, g)) return *err;
    std::string conversation_id;
    if (kind == "chat") {
        if (auto err = parse_conversation_id(c.body, conversation_id)) return *err;
        if (g.query.empty()) return invalid_param("query is required");
    }
    if (c.app.mode == "agent-chat" && !g.streaming) return invalid_param("Agent Chat App does not support blocking mode");
    if (auto err = validate_inputs(c.app, g.inputs)) return *err;
    if (!conversation_id.empty()) {
        g.conversation = store_->find_conversation(c.app, *c.user, conversation_id);
        if (!g.conversation || g.conversation->hidden) return not_found("Conversation Not Exists.");
    }
    if (c.app.file_upload || kind == "workflow") // other app types ignore `files` when uploads are off
        if (auto err = resolve_files(c.body.if_contains("files"), *store_, g.files)) return *err;

    // App concurrency limit: a 400 invalid_param, not a 429.
    auto slot = store_->try_acquire_slot(c.app);
    if (!slot) return too_many_requests(c.app);
    if (g.streaming && c.app.is_workflow_engine()) {
        // Dify 1.13 enters the slot a second time inside a context that releases it right
        // after enqueueing: a limit of 1 fails every such request; others barely count.
        if (!store_->try_acquire_slot(c.app)) return too_many_requests(c.app);
        slot.reset();
    }

    if (kind == "chat" && !g.conversation) {
        g.conversation = &store_->create_conversation(c.app, *c.user, g.inputs, false);
        if (g.auto_name) g.conversation->name = g.query.substr(0, 40);
    }
    auto in = start_generation(c, g);
    if (!g.streaming) {
        reply r = kind == "workflow" ? generate_reply(blocking_workflow_body(in, in.created_at))
                                     : generate_reply(blocking_message_body(in));
        r.delay = opts_.token_delay * static_cast<long>(generation_event_count(in));
        r.hold = std::move(slot);
        return r;
    }
    reply r;
    r.content_type = "text/event-stream; charset=utf-8";
    r.stream = stream_generation(c, kind, in);
    r.hold = std::move(slot);
    return r;
}

// Records the message (chat, completion) and workflow run the generation produces, and
// returns what the event builders need. Blocking calls are recorded as finished.
generation_input dify_api::start_generation(call& c, generate_request& g)
{
    generation_input in;
    in.mode = c.app.mode;
    in.task_id = store_->new_uuid();
    in.created_at = store_->now();
    in.inputs = g.inputs;
    in.user_session = c.user->session_id;
    in.end_user_id = c.user->id;
    in.app_id = c.app.id;
    in.query = g.query;
    in.workflow_id = c.app.workflow_id;
    in.answer = compose_answer(g);
    in.use.prompt_tokens = prompt_tokens(g);
    in.use.completion_tokens = count_tokens(in.answer);
    for (auto* f : g.files) f->referenced = true;

    if (g.kind == "completion") g.conversation = &store_->create_conversation(c.app, *c.user, g.inputs, true);
    if (g.conversation) {
        message_rec m;
        m.id = store_->new_uuid();
        m.conversation_id = g.conversation->id;
        m.query = g.query;
        m.inputs = g.inputs;
        m.created_at = in.created_at;
        m.answer = g.streaming ? "" : in.answer;
        for (auto* f : g.files) m.file_ids.push_back(f->id);
        in.message_id = store_->add_message(*g.conversation, std::move(m)).id;
        if (g.kind == "chat") in.conversation_id = g.conversation->id;
    }
    if (c.app.is_workflow_engine()) {
        workflow_run_rec run;
        run.id = store_->new_uuid();
        run.app_id = c.app.id;
        run.workflow_id = c.app.workflow_id;
        run.inputs = g.inputs;
        run.created_at = in.created_at;
        run.end_user_id = c.user->id;
        run.end_user_session = c.user->session_id;
        run.total_tokens = in.use.total();
        run.total_steps = 3;
        if (!g.streaming) {
            run.status = "succeeded";
            run.outputs = json::object{{g.kind == "workflow" ? "summary" : "answer", in.answer}};
            run.finished_at = in.created_at;
            run.elapsed_time = 0.5;
        }
        in.workflow_run_id = store_->add_run(std::move(run)).id;
    }
    return in;
}

// The SSE source for `in`; when it ends (or the client leaves), the store gets the outcome.
std::shared_ptr<event_stream> dify_api::stream_generation(call& c, const std::string& kind, const generation_input& in)
{
    std::weak_ptr<store> weak = store_;
    auto finish = [weak, conversation_id = in.conversation_id, msg_id = in.message_id, run_id = in.workflow_run_id,
                   task_id = in.task_id, out_key = std::string(kind == "workflow" ? "summary" : "answer")](
                      const std::string& text, bool stopped
                  ) {
        auto st = weak.lock();
        if (!st) return;
        st->remove_task(task_id);
        if (auto* m = st->find_message_by_id(msg_id)) m->answer = text;
        if (auto* run = st->find_run(run_id)) {
            run->status = stopped ? "stopped" : "succeeded";
            run->outputs = stopped ? json::object() : json::object{{out_key, text}};
            run->finished_at = st->now();
            run->elapsed_time = 0.5;
        }
    };
    auto stream = make_generation_stream(in, [this] { return store_->new_uuid(); }, std::move(finish));
    store_->add_task(in.task_id, task_rec{c.app.id, c.user->session_id, kind, stream});
    return stream;
}

reply dify_api::stop_task(call& c, const std::string& kind)
{
    if (auto wrong = mode_mismatch(c.app, kind)) return *wrong;
    // Always success, whatever the task; only matching tasks stop.
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
