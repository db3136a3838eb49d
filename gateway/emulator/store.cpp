#include "gateway/emulator/store.hpp"

#include <algorithm>
#include <cstdio>

namespace gw::emulator {

store::store(std::vector<app_def> apps, clock_fn clock, std::uint64_t seed)
    : apps_(std::move(apps)), clock_(std::move(clock)), rng_(seed), active_(std::make_shared<std::map<std::string, int>>())
{
}

std::string store::new_uuid()
{
    std::uint64_t hi = rng_(), lo = rng_();
    hi = (hi & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL; // version 4
    lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL; // variant 10
    char buf[37];
    std::snprintf(
        buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
        static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
        static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL)
    );
    return buf;
}

const app_def* store::app_by_key(std::string_view key) const
{
    for (const auto& a : apps_)
        if (a.key == key) return &a;
    return nullptr;
}

const app_def* store::app_by_id(std::string_view id) const
{
    for (const auto& a : apps_)
        if (a.id == id) return &a;
    return nullptr;
}

const end_user_rec& store::end_user(const app_def& app, const std::string& session_id)
{
    auto key = app.id + '\n' + session_id;
    auto it = end_users_.find(key);
    if (it == end_users_.end())
        it = end_users_.emplace(key, end_user_rec{new_uuid(), app.id, session_id, now()}).first;
    return it->second;
}

conversation_rec* store::find_conversation(const app_def& app, const end_user_rec& user, std::string_view id)
{
    auto it = conversations_.find(std::string(id));
    if (it == conversations_.end()) return nullptr;
    auto& c = it->second;
    if (c.app_id != app.id || c.end_user_id != user.id) return nullptr;
    return &c;
}

conversation_rec& store::create_conversation(
    const app_def& app,
    const end_user_rec& user,
    boost::json::object inputs,
    bool hidden
)
{
    conversation_rec c;
    c.id = new_uuid();
    c.app_id = app.id;
    c.end_user_id = user.id;
    c.name = "New conversation";
    c.inputs = std::move(inputs);
    c.created_at = c.updated_at = now();
    c.hidden = hidden;
    if (app.is_chat()) {
        variable_rec v;
        v.id = new_uuid();
        v.name = "memo";
        v.description = "A conversation variable seeded by the emulator";
        v.created_at = v.updated_at = c.created_at;
        c.variables.push_back(std::move(v));
    }
    auto id = c.id;
    while (conversations_.size() >= max_kept && !conversation_order_.empty()) forget_oldest_conversation();
    conversation_order_.push_back(id);
    return conversations_.emplace(id, std::move(c)).first->second;
}

void store::forget_oldest_conversation()
{
    auto it = conversations_.find(conversation_order_.front());
    conversation_order_.pop_front();
    if (it == conversations_.end()) return; // deleted meanwhile
    for (const auto& m : it->second.messages) message_conversation_.erase(m.id);
    conversations_.erase(it);
}

std::vector<conversation_rec*> store::conversations_of(const app_def& app, const end_user_rec& user)
{
    std::vector<conversation_rec*> out;
    for (auto& [id, c] : conversations_)
        if (c.app_id == app.id && c.end_user_id == user.id && !c.hidden) out.push_back(&c);
    std::sort(out.begin(), out.end(), [](auto* a, auto* b) {
        return a->updated_at != b->updated_at ? a->updated_at > b->updated_at : a->id > b->id;
    });
    return out;
}

std::vector<const conversation_rec*> store::conversations_of_app(const app_def& app) const
{
    std::vector<const conversation_rec*> out;
    for (const auto& [id, c] : conversations_)
        if (c.app_id == app.id) out.push_back(&c);
    std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->created_at != b->created_at ? a->created_at < b->created_at : a->id < b->id; });
    return out;
}

std::vector<const end_user_rec*> store::end_users_of(const app_def& app) const
{
    std::vector<const end_user_rec*> out;
    for (const auto& [key, u] : end_users_)
        if (u.app_id == app.id) out.push_back(&u);
    return out;
}

bool store::delete_conversation(const app_def& app, const end_user_rec& user, std::string_view id)
{
    auto* c = find_conversation(app, user, id);
    if (!c || c->hidden) return false;
    for (const auto& m : c->messages) message_conversation_.erase(m.id);
    conversations_.erase(std::string(id));
    return true;
}

message_rec& store::add_message(conversation_rec& c, message_rec m)
{
    message_conversation_[m.id] = c.id;
    c.updated_at = m.created_at;
    c.messages.push_back(std::move(m));
    return c.messages.back();
}

message_rec* store::find_message_by_id(std::string_view id)
{
    auto link = message_conversation_.find(std::string(id));
    if (link == message_conversation_.end()) return nullptr;
    auto conv = conversations_.find(link->second);
    if (conv == conversations_.end()) return nullptr;
    auto& msgs = conv->second.messages;
    for (auto it = msgs.rbegin(); it != msgs.rend(); ++it)
        if (it->id == id) return &*it;
    return nullptr;
}

message_rec* store::find_message(const app_def& app, const end_user_rec& user, std::string_view id)
{
    auto* m = find_message_any_user(app, id);
    if (!m) return nullptr;
    const auto& conv = conversations_.at(m->conversation_id);
    return conv.end_user_id == user.id ? m : nullptr;
}

message_rec* store::find_message_any_user(const app_def& app, std::string_view id)
{
    auto* m = find_message_by_id(id);
    if (!m || conversations_.at(m->conversation_id).app_id != app.id) return nullptr;
    return m;
}

namespace {
// Records are keyed by their `id`.
template <typename Map, typename Rec>
Rec& insert_by_id(Map& map, Rec rec)
{
    auto id = rec.id;
    return map.insert_or_assign(std::move(id), std::move(rec)).first->second;
}

template <typename Map>
auto* find_by_id(Map& map, std::string_view id)
{
    auto it = map.find(std::string(id));
    return it == map.end() ? nullptr : &it->second;
}
} // namespace

file_rec& store::add_file(file_rec f)
{
    return insert_by_id(files_, std::move(f));
}

file_rec* store::find_file(std::string_view id)
{
    return find_by_id(files_, id);
}

workflow_run_rec& store::add_run(workflow_run_rec r)
{
    while (runs_.size() >= max_kept && !run_order_.empty()) {
        runs_.erase(run_order_.front());
        run_order_.pop_front();
    }
    run_order_.push_back(r.id);
    return insert_by_id(runs_, std::move(r));
}

workflow_run_rec* store::find_run(std::string_view id)
{
    return find_by_id(runs_, id);
}

std::vector<const workflow_run_rec*> store::runs_of(const app_def& app) const
{
    std::vector<const workflow_run_rec*> out;
    for (const auto& [id, r] : runs_)
        if (r.app_id == app.id) out.push_back(&r);
    std::sort(out.begin(), out.end(), [](auto* a, auto* b) {
        return a->created_at != b->created_at ? a->created_at > b->created_at : a->id > b->id;
    });
    return out;
}

task_rec* store::find_task(std::string_view task_id)
{
    return find_by_id(tasks_, task_id);
}

namespace {
// One active request of an app; gives its slot back when destroyed.
struct active_slot
{
    std::weak_ptr<std::map<std::string, int>> counts;
    std::string app_id;
    ~active_slot()
    {
        if (auto c = counts.lock()) --(*c)[app_id];
    }
};
} // namespace

std::shared_ptr<void> store::try_acquire_slot(const app_def& app)
{
    int& n = (*active_)[app.id];
    if (app.max_active_requests > 0 && n >= app.max_active_requests) return nullptr;
    ++n;
    auto slot = std::make_shared<active_slot>(); // built in place: a temporary would release on destruction
    slot->counts = active_;
    slot->app_id = app.id;
    return slot;
}

int store::active_requests(const app_def& app) const
{
    auto it = active_->find(app.id);
    return it == active_->end() ? 0 : it->second;
}

void store::clear()
{
    end_users_.clear();
    conversations_.clear();
    message_conversation_.clear();
    files_.clear();
    runs_.clear();
    tasks_.clear();
    conversation_order_.clear();
    run_order_.clear();
}

} // namespace gw::emulator
