// The emulator's in-memory Dify data: end users, conversations, messages, feedback,
// conversation variables, uploaded files, workflow runs, running tasks and per-app
// active-request counts. Single-threaded: owned by one emulator service on one executor.
#pragma once

#include "gateway/emulator/apps.hpp"
#include "gateway/emulator/wire.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <deque>
#include <unordered_map>
#include <vector>

namespace gw::emulator {

struct message_rec
{
    std::string id;
    std::string conversation_id;
    std::string query;
    std::string answer;
    boost::json::object inputs;
    std::vector<std::string> file_ids;
    std::int64_t created_at = 0;
    std::optional<std::string> rating; // "like" / "dislike"
    std::string feedback_content;
    std::string status = "normal";
};

struct variable_rec
{
    std::string id;
    std::string name;
    std::string value_type = "string";
    std::string value;
    std::string description;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
};

struct conversation_rec
{
    std::string id;
    std::string app_id;
    std::string end_user_id;
    std::string name;
    boost::json::object inputs;
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    bool hidden = false; // completion apps keep a conversation that is never exposed
    std::vector<message_rec> messages;
    std::vector<variable_rec> variables;
};

struct file_rec
{
    std::string id;
    std::string app_id;
    std::string name;
    std::string extension;
    std::string mime_type;
    std::string data;
    std::string created_by; // end-user id
    std::int64_t created_at = 0;
    bool referenced = false; // used by a message of this app (preview needs it)
};

struct workflow_run_rec
{
    std::string id;
    std::string app_id;
    std::string workflow_id;
    std::string status = "running";
    boost::json::object inputs;
    boost::json::object outputs;
    std::int64_t total_tokens = 0;
    int total_steps = 0;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> finished_at;
    double elapsed_time = 0;
    std::string end_user_id;
    std::string end_user_session;
};

struct end_user_rec
{
    std::string id;
    std::string app_id;
    std::string session_id; // the `user` string
    std::int64_t created_at = 0;
};

// A running generation that the stop endpoints can reach.
struct task_rec
{
    std::string app_id;
    std::string user; // session id that started it
    std::string kind; // "chat", "completion", "workflow"
    std::weak_ptr<event_stream> stream;
};

class store
{
public:
    using clock_fn = std::function<std::int64_t()>; // unix seconds

    store(std::vector<app_def> apps, clock_fn clock, std::uint64_t seed);

    std::int64_t now() const { return clock_(); }
    std::string new_uuid();

    const app_def* app_by_key(std::string_view key) const;
    const app_def* app_by_id(std::string_view id) const;
    const std::vector<app_def>& apps() const { return apps_; }

    const end_user_rec& end_user(const app_def& app, const std::string& session_id);

    conversation_rec* find_conversation(const app_def& app, const end_user_rec& user, std::string_view id);
    conversation_rec& create_conversation(const app_def& app, const end_user_rec& user, boost::json::object inputs, bool hidden);
    // Conversations of that user, not hidden, newest update first.
    std::vector<conversation_rec*> conversations_of(const app_def& app, const end_user_rec& user);
    // Every conversation of the app (feedback listing).
    std::vector<const conversation_rec*> conversations_of_app(const app_def& app) const;
    std::vector<const end_user_rec*> end_users_of(const app_def& app) const;
    bool delete_conversation(const app_def& app, const end_user_rec& user, std::string_view id);
    // Appends a message to a conversation (and indexes it by id).
    message_rec& add_message(conversation_rec& c, message_rec m);
    message_rec* find_message_by_id(std::string_view id);
    // A message owned by that user in that app.
    message_rec* find_message(const app_def& app, const end_user_rec& user, std::string_view id);
    message_rec* find_message_any_user(const app_def& app, std::string_view id);

    file_rec& add_file(file_rec f);
    file_rec* find_file(std::string_view id);

    workflow_run_rec& add_run(workflow_run_rec r);
    workflow_run_rec* find_run(std::string_view id);
    std::vector<const workflow_run_rec*> runs_of(const app_def& app) const;

    void add_task(const std::string& task_id, task_rec t) { tasks_[task_id] = std::move(t); }
    task_rec* find_task(std::string_view task_id);
    void remove_task(const std::string& task_id) { tasks_.erase(task_id); }

    // Concurrency slots per app. `try_acquire` returns nullptr when full;
    // the slot is released when the returned handle is destroyed.
    std::shared_ptr<void> try_acquire_slot(const app_def& app);
    int active_requests(const app_def& app) const;

    void clear();

    // The emulator keeps the newest max_kept conversations and workflow runs; older ones
    // are forgotten as if deleted, so that long benchmark runs stay flat in memory and time.
    static constexpr std::size_t max_kept = 10'000;

private:
    void forget_oldest_conversation();

    std::vector<app_def> apps_;
    clock_fn clock_;
    std::mt19937_64 rng_;
    std::shared_ptr<std::map<std::string, int>> active_; // shared with slot handles
    std::map<std::string, end_user_rec> end_users_;       // key: app_id + '\n' + session
    std::unordered_map<std::string, conversation_rec> conversations_;
    std::unordered_map<std::string, std::string> message_conversation_; // message id -> conversation id
    std::unordered_map<std::string, file_rec> files_;
    std::unordered_map<std::string, workflow_run_rec> runs_;
    std::unordered_map<std::string, task_rec> tasks_;
    std::deque<std::string> conversation_order_, run_order_; // creation order, for max_kept
};

} // namespace gw::emulator
