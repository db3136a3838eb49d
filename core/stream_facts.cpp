#include "core/stream_facts.hpp"

#include "core/json_walk.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <array>
#include <cmath>
#include <vector>

namespace gw::core {

namespace json = boost::json;

namespace {

// The few members a gateway reads from a Dify event or reply, taken in one pass of a
// SAX reader (no document tree: an event's answer text is skipped, not copied).
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
        key_ = member::other;
        key_done_ = false;
        string_started_ = false;
    }

    // What json_walk calls (a document read whole).
    void begin(bool object)
    {
        if (levels_.empty()) out_->object = object;
        levels_.push_back({classify_key(), object});
        value_done();
    }
    void end()
    {
        levels_.pop_back();
        value_done();
    }
    // A member's name is told apart once, when it is complete; values compare codes.
    void key(std::string_view name)
    {
        key_ = classify(name);
        key_done_ = true;
    }
    void string(std::string_view s)
    {
        append_string(s);
        string_started_ = false;
        value_done();
    }
    bool wants_number() const { return number_slot_here() != slot::none; }
    void integer(std::int64_t n)
    {
        store_number(number_slot_here(), n, static_cast<double>(n));
        value_done();
    }
    // A count written as a real number is taken by its integral part when int64 holds it.
    void real(double d)
    {
        const slot s = number_slot_here();
        if (std::isfinite(d) && d > -9.2e18 && d < 9.2e18)
            store_number(s, static_cast<std::int64_t>(d), d);
        value_done();
    }
    void other() { value_done(); }

    // Every name this reader acts on is told apart, and nothing else (checked at compile time).
    static constexpr bool classifies_every_name()
    {
        constexpr std::pair<std::string_view, member> names[] = {
            {"metadata", member::metadata}, {"usage", member::usage}, {"data", member::data},
            {"execution_metadata", member::execution_metadata}, {"event", member::event}, {"id", member::id},
            {"task_id", member::task_id}, {"conversation_id", member::conversation_id},
            {"workflow_run_id", member::workflow_run_id}, {"message_id", member::message_id},
            {"code", member::code}, {"message", member::message}, {"status", member::status},
            {"form_token", member::form_token}, {"node_id", member::node_id}, {"node_type", member::node_type},
            {"title", member::title}, {"error", member::error}, {"total_tokens", member::total_tokens},
            {"prompt_tokens", member::prompt_tokens}, {"completion_tokens", member::completion_tokens},
            {"elapsed_time", member::elapsed_time},
        };
        for (const auto& [text, m] : names) {
            std::array<char, 32> longer{}; // the name and one more letter
            for (std::size_t i = 0; i < text.size(); ++i) longer[i] = text[i];
            longer[text.size()] = 'x';
            if (classify(text) != m || classify(text.substr(1)) != member::other ||
                classify(std::string_view(longer.data(), text.size() + 1)) != member::other)
                return false;
        }
        return classify("") == member::other && classify("Id") == member::other;
    }

    // What Boost.JSON's basic_parser calls (a reply read piece by piece); names and
    // strings may come in parts.
    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) { return begin(true), true; }
    bool on_object_end(std::size_t, json::error_code&) { return end(), true; }
    bool on_array_begin(json::error_code&) { return begin(false), true; }
    bool on_array_end(std::size_t, json::error_code&) { return end(), true; }
    bool on_key_part(std::string_view s, std::size_t, json::error_code&)
    {
        key_parts_.append(s);
        return true;
    }
    bool on_key(std::string_view s, std::size_t, json::error_code&)
    {
        if (key_parts_.empty()) return key(s), true;
        key_parts_.append(s);
        key(key_parts_);
        key_parts_.clear();
        return true;
    }
    bool on_string_part(std::string_view s, std::size_t, json::error_code&)
    {
        append_string(s);
        return true;
    }
    bool on_string(std::string_view s, std::size_t, json::error_code&) { return string(s), true; }
    bool on_number_part(std::string_view, json::error_code&) { return true; }
    bool on_int64(std::int64_t i, std::string_view, json::error_code&) { return integer(i), true; }
    bool on_uint64(std::uint64_t u, std::string_view, json::error_code&) { return real(static_cast<double>(u)), true; }
    bool on_double(double d, std::string_view, json::error_code&) { return real(d), true; }
    bool on_bool(bool, json::error_code&) { return other(), true; }
    bool on_null(json::error_code&) { return other(), true; }
    bool on_comment_part(std::string_view, json::error_code&) { return true; }
    bool on_comment(std::string_view, json::error_code&) { return true; }

private:
    // The member names this reader acts on; every other name is `other`.
    enum class member : unsigned char {
        other, metadata, usage, data, execution_metadata, event, id, task_id, conversation_id, workflow_run_id,
        message_id, code, message, status, form_token, node_id, node_type, title, error, total_tokens,
        prompt_tokens, completion_tokens, elapsed_time
    };
    // By length first: most names in a reply are told apart without comparing text.
    static constexpr member classify(std::string_view name)
    {
        const auto is = [name](std::string_view text, member m) { return name == text ? m : member::other; };
        switch (name.size()) {
        case 2: return is("id", member::id);
        case 4:
            if (name == "data") return member::data;
            return is("code", member::code);
        case 5:
            if (name == "usage") return member::usage;
            if (name == "event") return member::event;
            if (name == "title") return member::title;
            return is("error", member::error);
        case 6: return is("status", member::status);
        case 7:
            if (name == "task_id") return member::task_id;
            if (name == "message") return member::message;
            return is("node_id", member::node_id);
        case 8: return is("metadata", member::metadata);
        case 9: return is("node_type", member::node_type);
        case 10:
            if (name == "message_id") return member::message_id;
            return is("form_token", member::form_token);
        case 12:
            if (name == "total_tokens") return member::total_tokens;
            return is("elapsed_time", member::elapsed_time);
        case 13: return is("prompt_tokens", member::prompt_tokens);
        case 15:
            if (name == "conversation_id") return member::conversation_id;
            return is("workflow_run_id", member::workflow_run_id);
        case 17: return is("completion_tokens", member::completion_tokens);
        case 18: return is("execution_metadata", member::execution_metadata);
        default: return member::other;
        }
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
        case member::metadata: return name::metadata;
        case member::usage: return name::usage;
        case member::data: return name::data;
        case member::execution_metadata: return name::execution_metadata;
        default: return name::other;
        }
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
        case member::form_token: return &out_->form_token;
        case member::id: return &out_->data_id;
        case member::node_id: return &out_->node_id;
        case member::node_type: return &out_->node_type;
        case member::title: return &out_->title;
        case member::status: return &out_->data_status;
        case member::error: return &out_->data_error;
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
    void value_done()
    {
        key_ = member::other;
        key_done_ = false;
    }
    // Where a string value at the current position goes (nullptr: not wanted).
    std::string* string_target()
    {
        if (under_data(2)) return data_string_target();
        if (levels_.size() != 1 || !in_object() || !key_done_) return nullptr;
        switch (key_) {
        case member::event: return &out_->event;
        case member::id: return &out_->id;
        case member::task_id: return &out_->task_id;
        case member::conversation_id: return &out_->conversation_id;
        case member::workflow_run_id: return &out_->workflow_run_id;
        case member::message_id: return &out_->message_id;
        case member::code: return &out_->code;
        case member::message: return &out_->message;
        default: return nullptr;
        }
    }
    // The numbers this reader keeps, by where they sit.
    enum class slot : unsigned char {
        none, status, usage_total, usage_prompt, usage_completion, data_total, elapsed_time, node_tokens
    };
    slot number_slot_here() const
    {
        if (!in_object() || !key_done_) return slot::none;
        switch (levels_.size()) {
        case 1: return key_ == member::status ? slot::status : slot::none;
        case 2:
            if (levels_[1].under != name::data) return slot::none;
            if (key_ == member::total_tokens) return slot::data_total;
            return key_ == member::elapsed_time ? slot::elapsed_time : slot::none;
        case 3:
            if (levels_[1].under == name::metadata && levels_[2].under == name::usage) {
                if (key_ == member::total_tokens) return slot::usage_total;
                if (key_ == member::prompt_tokens) return slot::usage_prompt;
                return key_ == member::completion_tokens ? slot::usage_completion : slot::none;
            }
            if (levels_[1].under == name::data && levels_[2].under == name::execution_metadata)
                return key_ == member::total_tokens ? slot::node_tokens : slot::none;
            return slot::none;
        default: return slot::none;
        }
    }
    // `n` is the number as a count, `d` as written (elapsed_time keeps its fraction).
    void store_number(slot s, std::int64_t n, double d)
    {
        switch (s) {
        case slot::none: return;
        case slot::status: out_->status = n; return;
        case slot::usage_total: out_->usage_total_tokens = n; return;
        case slot::usage_prompt: out_->usage_prompt_tokens = n; return;
        case slot::usage_completion: out_->usage_completion_tokens = n; return;
        case slot::data_total: out_->data_total_tokens = n; return;
        case slot::elapsed_time: out_->elapsed_time = d; return;
        case slot::node_tokens: out_->node_tokens = n; return;
        }
    }

    dify_fields* out_;
    boost::container::small_vector<level, 8> levels_; // Dify's documents nest a few levels: no allocation
    std::string key_parts_; // a name the parser handed over in pieces, until its last one
    member key_ = member::other;  // the current member's name
    bool key_done_ = false;
    bool string_started_ = false;
};

constexpr std::size_t max_json_depth = 128;

static_assert(fields_handler::classifies_every_name());

json::parse_options reader_options()
{
    json::parse_options o;
    o.max_depth = max_json_depth;
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
// A spare's buffer for gathering a blocking reply (below) is kept up to this size.
constexpr std::size_t max_kept_gathered_bytes = 4096;

// A blocking reply up to this size is gathered and read whole with json_walk (most are a
// few KiB, often in one piece); a longer one is read piece by piece by Boost.JSON's parser,
// so that nothing but the facts is kept of a reply of any size.
constexpr std::size_t max_whole_json_body = 16 * 1024;

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
// event allocates nothing once its strings have grown to an event's ids. Both readers
// tell the same handler what they meet and accept the same documents.
struct stream_facts::body_reader
{
    dify_fields fields;
    json::basic_parser<fields_handler> parser{reader_options(), &fields};
    json_walk<fields_handler> walk{max_json_depth};
    std::string gathered;   // a blocking reply's pieces, while it is short enough to read whole
    bool streaming = false; // the reply outgrew `gathered`: `parser` reads it
    bool failed = false;

    // The heap kept besides `gathered`.
    std::size_t retained_bytes() { return fields.retained_bytes() + parser.handler().retained_bytes() + walk.retained_bytes(); }
    // Ready for a new document; what was read is gone, the capacity stays.
    void restart()
    {
        fields.clear();
        parser.reset();
        parser.handler().reset();
        gathered.clear();
        streaming = false;
        failed = false;
    }
    // Reads one whole document (a stream's event) with a reader just borrowed; false when
    // it is not valid JSON.
    bool read_document(std::string_view text) { return walk.run(text, parser.handler()); }
    // Part of a blocking reply.
    void feed(std::string_view piece)
    {
        if (failed || piece.empty()) return;
        if (!streaming && gathered.size() + piece.size() <= max_whole_json_body) {
            gathered.append(piece);
            return;
        }
        if (!streaming) {
            streaming = true;
            stream(gathered);
            gathered.clear();
        }
        stream(piece);
    }
    // The reply is complete; false when it was not one valid JSON document.
    bool finish()
    {
        if (failed) return false;
        if (!streaming) return walk.run(gathered, parser.handler());
        json::error_code ec;
        parser.write_some(false, nullptr, 0, ec);
        return !ec;
    }

private:
    void stream(std::string_view piece)
    {
        if (failed || piece.empty()) return;
        json::error_code ec;
        // Less than the whole piece taken: the document ended before it, and what follows
        // is not whitespace (Boost.JSON's parser leaves that to its caller).
        if (parser.write_some(true, piece.data(), piece.size(), ec) != piece.size() || ec) failed = true;
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
    if (reader->gathered.capacity() > max_kept_gathered_bytes) {
        reader->gathered.clear();
        reader->gathered.shrink_to_fit();
    }
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
    // Borrowed per event, not per stream: an open stream holds no reader while it waits.
    const auto reader = borrow_reader();
    if (!reader->read_document(e.data) || !reader->fields.object) {
        ++malformed_;
        return;
    }
    auto* f = &reader->fields;
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
    body_->feed(piece);
}

void stream_facts::end_json_body()
{
    if (!body_) body_ = borrow_reader();
    auto reader = std::move(body_); // back to the thread's spares at the end of this call
    if (!reader->finish() || !reader->fields.object) return;
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
