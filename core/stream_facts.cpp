#include "core/stream_facts.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <array>
#include <vector>

namespace gw::core {

namespace json = boost::json;

namespace {

// The few members a gateway reads from a Dify event or reply, taken in one pass of a
// SAX parser (no document tree: an event's answer text is skipped, not copied).
struct dify_fields
{
    bool object = false; // the document is a JSON object
    std::string event, id, task_id, conversation_id, workflow_run_id, message_id, code, message, form_token;
    std::optional<std::int64_t> status, usage_total_tokens, data_total_tokens;
    std::optional<std::int64_t> usage_prompt_tokens, usage_completion_tokens;
    // Members of `data` a workflow node event has.
    std::string data_id, node_id, node_type, title, data_status, data_error;
    std::optional<double> elapsed_time;
    std::optional<std::int64_t> node_tokens; // data.execution_metadata.total_tokens

    // Empty again, the strings keeping their capacity (a stream's reader is reused per event).
    void clear()
    {
        object = false;
        for (auto* s : strings()) s->clear();
        status = usage_total_tokens = data_total_tokens = usage_prompt_tokens = usage_completion_tokens = node_tokens = std::nullopt;
        elapsed_time = std::nullopt;
    }
    // The heap the strings hold on to.
    std::size_t retained_bytes()
    {
        std::size_t n = 0;
        for (auto* s : strings()) n += s->capacity();
        return n;
    }

private:
    std::array<std::string*, 15> strings()
    {
        return {&event, &id, &task_id, &conversation_id, &workflow_run_id, &message_id, &code, &message, &form_token,
                &data_id, &node_id, &node_type, &title, &data_status, &data_error};
    }
};

class fields_handler
{
public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    explicit fields_handler(dify_fields* out) : out_(out) {}
    std::size_t retained_bytes() const { return key_parts_.capacity(); }
    // Ready for the next document (a failed one may have left containers open).
    void reset()
    {
        levels_.clear();
        key_parts_.clear();
        key_ = key::other;
        key_done_ = false;
        string_started_ = false;
    }

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) { return open(true); }
    bool on_object_end(std::size_t, json::error_code&) { return close(); }
    bool on_array_begin(json::error_code&) { return open(false); }
    bool on_array_end(std::size_t, json::error_code&) { return close(); }
    bool on_key_part(std::string_view s, std::size_t, json::error_code&)
    {
        key_parts_.append(s);
        return true;
    }
    // A member's name is told apart once, when it is complete; values compare codes.
    bool on_key(std::string_view s, std::size_t, json::error_code&)
    {
        if (key_parts_.empty()) {
            key_ = classify(s);
        } else {
            key_parts_.append(s);
            key_ = classify(key_parts_);
            key_parts_.clear();
        }
        key_done_ = true;
        return true;
    }
    bool on_string_part(std::string_view s, std::size_t, json::error_code&)
    {
        append_string(s);
        return true;
    }
    bool on_string(std::string_view s, std::size_t, json::error_code&)
    {
        append_string(s);
        string_started_ = false;
        return value_done();
    }
    bool on_number_part(std::string_view, json::error_code&) { return true; }
    bool on_int64(std::int64_t i, std::string_view, json::error_code&) { return number(i); }
    bool on_uint64(std::uint64_t u, std::string_view, json::error_code&) { return number(static_cast<std::int64_t>(u)); }
    bool on_double(double d, std::string_view, json::error_code&)
    {
        if (!under_data(2) || key_ != key::elapsed_time) return number(static_cast<std::int64_t>(d));
        out_->elapsed_time = d;
        return value_done();
    }
    bool on_bool(bool, json::error_code&) { return value_done(); }
    bool on_null(json::error_code&) { return value_done(); }
    bool on_comment_part(std::string_view, json::error_code&) { return true; }
    bool on_comment(std::string_view, json::error_code&) { return true; }

private:
    // The member names this reader acts on; every other name is `other`.
    enum class key : unsigned char {
        other, metadata, usage, data, execution_metadata, event, id, task_id, conversation_id, workflow_run_id,
        message_id, code, message, status, form_token, node_id, node_type, title, error, total_tokens,
        prompt_tokens, completion_tokens, elapsed_time
    };
    static key classify(std::string_view name)
    {
        static constexpr std::pair<std::string_view, key> names[] = {
            {"metadata", key::metadata},
            {"usage", key::usage},
            {"data", key::data},
            {"execution_metadata", key::execution_metadata},
            {"event", key::event},
            {"id", key::id},
            {"task_id", key::task_id},
            {"conversation_id", key::conversation_id},
            {"workflow_run_id", key::workflow_run_id},
            {"message_id", key::message_id},
            {"code", key::code},
            {"message", key::message},
            {"status", key::status},
            {"form_token", key::form_token},
            {"node_id", key::node_id},
            {"node_type", key::node_type},
            {"title", key::title},
            {"error", key::error},
            {"total_tokens", key::total_tokens},
            {"prompt_tokens", key::prompt_tokens},
            {"completion_tokens", key::completion_tokens},
            {"elapsed_time", key::elapsed_time},
        };
        for (const auto& [text, k] : names)
            if (name == text) return k;
        return key::other;
    }

    // Containers from the root inward: which member each sits under (only the names
    // this reader follows are told apart) and whether it is an object.
    enum class name : unsigned char { other, metadata, usage, data, execution_metadata };
    struct level
    {
        name under;
        bool object;
    };
    name classify_key() const
    {
        if (!in_object()) return name::other;
        switch (key_) {
        case key::metadata: return name::metadata;
        case key::usage: return name::usage;
        case key::data: return name::data;
        case key::execution_metadata: return name::execution_metadata;
        default: return name::other;
        }
    }

    bool open(bool object)
    {
        if (levels_.empty()) out_->object = object;
        levels_.push_back({classify_key(), object});
        key_ = key::other;
        key_done_ = false;
        return true;
    }
    bool close()
    {
        levels_.pop_back();
        return value_done();
    }
    bool in_object() const { return !levels_.empty() && levels_.back().object; }
    // At a member `depth` containers deep whose second container is the event's `data`.
    bool under_data(std::size_t depth) const
    {
        return levels_.size() == depth && in_object() && key_done_ && levels_[1].under == name::data;
    }
    std::string* data_string_target()
    {
        switch (key_) {
        case key::form_token: return &out_->form_token;
        case key::id: return &out_->data_id;
        case key::node_id: return &out_->node_id;
        case key::node_type: return &out_->node_type;
        case key::title: return &out_->title;
        case key::status: return &out_->data_status;
        case key::error: return &out_->data_error;
        default: return nullptr;
        }
    }
    // A repeated member replaces the earlier value (as Python's json does).
    void append_string(std::string_view s)
    {
        auto* target = string_target();
        if (!target) return;
        if (!string_started_) target->clear();
        string_started_ = true;
        target->append(s);
    }
    bool value_done()
    {
        key_ = key::other;
        key_done_ = false;
        return true;
    }
    // Where a string value at the current position goes (nullptr: not wanted).
    std::string* string_target()
    {
        if (under_data(2)) return data_string_target();
        if (levels_.size() != 1 || !in_object() || !key_done_) return nullptr;
        switch (key_) {
        case key::event: return &out_->event;
        case key::id: return &out_->id;
        case key::task_id: return &out_->task_id;
        case key::conversation_id: return &out_->conversation_id;
        case key::workflow_run_id: return &out_->workflow_run_id;
        case key::message_id: return &out_->message_id;
        case key::code: return &out_->code;
        case key::message: return &out_->message;
        default: return nullptr;
        }
    }
    bool number(std::int64_t n)
    {
        if (in_object() && key_done_) {
            if (levels_.size() == 1 && key_ == key::status) out_->status = n;
            const bool in_usage =
                levels_.size() == 3 && levels_[1].under == name::metadata && levels_[2].under == name::usage;
            if (in_usage && key_ == key::total_tokens) out_->usage_total_tokens = n;
            if (in_usage && key_ == key::prompt_tokens) out_->usage_prompt_tokens = n;
            if (in_usage && key_ == key::completion_tokens) out_->usage_completion_tokens = n;
            if (levels_.size() == 2 && levels_[1].under == name::data) {
                if (key_ == key::total_tokens) out_->data_total_tokens = n;
                if (key_ == key::elapsed_time) out_->elapsed_time = static_cast<double>(n);
            }
            if (levels_.size() == 3 && key_ == key::total_tokens && levels_[1].under == name::data &&
                levels_[2].under == name::execution_metadata)
                out_->node_tokens = n;
        }
        return value_done();
    }

    dify_fields* out_;
    boost::container::small_vector<level, 8> levels_; // Dify's documents nest a few levels: no allocation
    std::string key_parts_; // a name the parser handed over in pieces, until its last one
    key key_ = key::other;  // the current member's name
    bool key_done_ = false;
    bool string_started_ = false;
};

json::parse_options reader_options()
{
    json::parse_options o;
    o.max_depth = 128;
    return o;
}

// The thread's spare readers. Bounded in number (a burst of concurrent replies does not
// keep its readers for good) and in size: a reader whose strings grew past
// max_kept_reader_bytes (a long key or message in some reply) is freed, not kept. Room is
// reserved when the thread first borrows, so giving a reader back never allocates or
// throws; one given back on a thread that never borrowed, or while the thread's list is
// being destroyed at thread exit, is freed.
constexpr std::size_t max_spare_readers = 16;
constexpr std::size_t max_kept_reader_bytes = 4096;

template <typename Reader>
class spare_readers
{
public:
    // This thread's list; nullptr once it is destroyed.
    static spare_readers* of_this_thread()
    {
        if (destroyed()) return nullptr;
        thread_local spare_readers list;
        return &list;
    }
    ~spare_readers() { destroyed() = true; }

    std::vector<std::unique_ptr<Reader>> readers;

private:
    spare_readers() = default;
    static bool& destroyed()
    {
        thread_local bool gone = false; // constant-initialized, no destructor: readable at thread exit
        return gone;
    }
};

} // namespace

// A reply's or a stream's reader: the stream's is reused for every event, so reading an
// event allocates nothing once its strings have grown to an event's ids.
struct stream_facts::body_reader
{
    dify_fields fields;
    json::basic_parser<fields_handler> parser{reader_options(), &fields};
    bool failed = false;

    std::size_t retained_bytes() { return fields.retained_bytes() + parser.handler().retained_bytes(); }
    // Ready for a new document; what was read is gone, the capacity stays.
    void restart()
    {
        fields.clear();
        parser.reset();
        parser.handler().reset();
        failed = false;
    }
    // Reads one whole document; false when it is not valid JSON.
    bool read_document(std::string_view text)
    {
        restart();
        json::error_code ec;
        parser.write_some(false, text.data(), text.size(), ec);
        return !ec;
    }
};

stream_facts::reader_ptr stream_facts::borrow_reader()
{
    auto* spares = spare_readers<body_reader>::of_this_thread();
    if (!spares || spares->readers.empty()) {
        if (spares) spares->readers.reserve(max_spare_readers);
        return reader_ptr(new body_reader);
    }
    reader_ptr reader(spares->readers.back().release());
    spares->readers.pop_back();
    reader->restart();
    return reader;
}

void stream_facts::return_reader::operator()(body_reader* r) const noexcept
{
    std::unique_ptr<body_reader> reader(r);
    auto* spares = spare_readers<body_reader>::of_this_thread();
    if (spares && spares->readers.size() < spares->readers.capacity() && reader->retained_bytes() <= max_kept_reader_bytes)
        spares->readers.push_back(std::move(reader));
}

std::size_t stream_facts::spare_readers_kept()
{
    auto* spares = spare_readers<body_reader>::of_this_thread();
    return spares ? spares->readers.size() : 0;
}

stream_facts::stream_facts() = default;
stream_facts::~stream_facts() = default;
stream_facts::stream_facts(stream_facts&&) noexcept = default;
stream_facts& stream_facts::operator=(stream_facts&&) noexcept = default;

void stream_facts::observe(const sse_event& e)
{
    ++events_;
    if (e.data.empty()) return; // ping, comment
    if (!events_reader_) events_reader_ = borrow_reader();
    if (!events_reader_->read_document(e.data) || !events_reader_->fields.object) {
        ++malformed_;
        return;
    }
    auto* f = &events_reader_->fields;
    // Copied, not moved: the reader keeps its strings' capacity for the next event.
    if (task_id_.empty()) task_id_.assign(f->task_id);
    if (conversation_id_.empty()) conversation_id_.assign(f->conversation_id);
    if (workflow_run_id_.empty()) workflow_run_id_.assign(f->workflow_run_id);
    if (message_id_.empty()) message_id_.assign(f->message_id);
    if (!f->form_token.empty()) form_tokens_.push_back(f->form_token);
    if (keep_node_events_ && (f->event == "node_started" || f->event == "node_finished") && !f->data_id.empty())
        node_events_.push_back(workflow_node_event{
            f->event == "node_finished", std::move(f->data_id), std::move(f->node_id), std::move(f->node_type),
            std::move(f->title), std::move(f->data_status), std::move(f->data_error), f->elapsed_time, f->node_tokens});
    if (f->event == "message_end") {
        if (f->usage_total_tokens) total_tokens_ = f->usage_total_tokens;
        prompt_tokens_ = f->usage_prompt_tokens;
        completion_tokens_ = f->usage_completion_tokens;
        finished_ = true;
    } else if (f->event == "workflow_finished") {
        // Chatflows report usage in both; message_end's value is the same run's total.
        if (!total_tokens_ && f->data_total_tokens) total_tokens_ = f->data_total_tokens;
        finished_ = true;
    } else if (f->event == "error") {
        error_ = stream_error{std::move(f->code), static_cast<int>(f->status.value_or(0)), std::move(f->message)};
        finished_ = true;
    }
}

void stream_facts::observe_json_body(std::string_view body)
{
    feed_json_body(body);
    end_json_body();
}

void stream_facts::feed_json_body(std::string_view piece)
{
    if (!body_) body_ = borrow_reader();
    if (body_->failed || piece.empty()) return;
    json::error_code ec;
    body_->parser.write_some(true, piece.data(), piece.size(), ec);
    if (ec) body_->failed = true;
}

void stream_facts::end_json_body()
{
    if (!body_) body_ = borrow_reader();
    json::error_code ec;
    if (!body_->failed) body_->parser.write_some(false, nullptr, 0, ec);
    auto reader = std::move(body_); // back to the thread's spares at the end of this call
    if (reader->failed || ec || !reader->fields.object) return;
    auto* f = &reader->fields;
    // Copied, not moved: the reader keeps its strings' capacity for the next reply.
    id_.assign(f->id);
    task_id_.assign(f->task_id);
    conversation_id_.assign(f->conversation_id);
    workflow_run_id_.assign(f->workflow_run_id);
    message_id_.assign(f->message_id);
    if (!f->form_token.empty()) form_tokens_.push_back(std::move(f->form_token));
    prompt_tokens_ = f->usage_prompt_tokens;
    completion_tokens_ = f->usage_completion_tokens;
    if (f->usage_total_tokens)
        total_tokens_ = f->usage_total_tokens;
    else if (f->data_total_tokens)
        total_tokens_ = f->data_total_tokens;
    finished_ = true;
}

} // namespace gw::core
