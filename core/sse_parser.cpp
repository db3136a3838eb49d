#include "core/sse_parser.hpp"

#include <algorithm>
#include <cstring>

namespace gw::core {

namespace {

// Strings that grew for a large event are not kept for the next one.
constexpr std::size_t max_kept_capacity = 1024;

void clear_string(std::string& s)
{
    if (s.capacity() > max_kept_capacity)
        std::string().swap(s);
    else
        s.clear();
}

// Where the first `c` at or after `from` is in `bytes` (bytes.size() if none).
std::size_t find_byte(std::string_view bytes, char c, std::size_t from)
{
    if (from >= bytes.size()) return bytes.size(); // an empty view may have no data pointer for memchr
    const void* at = std::memchr(bytes.data() + from, c, bytes.size() - from);
    return at ? static_cast<std::size_t>(static_cast<const char*>(at) - bytes.data()) : bytes.size();
}

} // namespace

void sse_parser::field::set(std::string_view v, bool keep)
{
    is_owned = keep;
    if (keep) {
        owned.assign(v);
        view = {};
    } else {
        view = v;
    }
}

void sse_parser::field::append_line(std::string_view v)
{
    if (!is_owned) {
        owned.assign(view);
        is_owned = true;
        view = {};
    }
    owned.push_back('\n');
    owned.append(v);
}

void sse_parser::field::keep()
{
    if (is_owned || view.empty()) return;
    owned.assign(view);
    is_owned = true;
    view = {};
}

void sse_parser::field::clear()
{
    view = {};
    clear_string(owned);
    is_owned = false;
}

void sse_parser::feed(std::string_view bytes, sse_event_sink on_event)
{
    const std::size_t n = bytes.size();
    std::size_t next_cr = find_byte(bytes, '\r', 0);
    std::size_t i = 0;
    while (i < n) {
        if (last_was_cr_ && bytes[i] == '\n') { // the LF of a CRLF: the line already ended at CR
            ++pending_;
            last_was_cr_ = false;
            ++i;
            continue;
        }
        if (next_cr < i) next_cr = find_byte(bytes, '\r', i);
        const std::size_t j = std::min(find_byte(bytes.substr(0, next_cr), '\n', i), next_cr);
        std::string_view segment = bytes.substr(i, j - i);
        const std::size_t room = max_event_bytes_ - std::min(max_event_bytes_, line_.size());
        if (segment.size() > room) {
            segment = segment.substr(0, room);
            truncated_ = true;
        }
        if (j == n) { // the piece ends inside a line: its start is kept
            line_.append(segment);
            pending_ += n - i;
            last_was_cr_ = false;
            break;
        }
        pending_ += j - i + 1;
        last_was_cr_ = bytes[j] == '\r';
        if (line_.empty()) {
            line_done(segment, true, j + 1, on_event);
        } else {
            line_.append(segment);
            line_done(line_, false, j + 1, on_event);
            clear_string(line_);
        }
        i = j + 1;
    }
    // The piece goes: what the event being read still views in it is copied.
    event_.keep();
    data_.keep();
    id_.keep();
}

void sse_parser::line_done(std::string_view line, bool from_piece, std::size_t end,
                           sse_event_sink on_event)
{
    if (line.empty()) { // blank line: dispatch
        if (has_fields_) {
            // With CRLF endings the event's last byte is the LF after this CR.
            const sse_event e{event_.current(), data_.current(), id_.current()};
            on_event(e, end);
        }
        event_.clear();
        data_.clear();
        id_.clear();
        data_length_ = 0;
        has_fields_ = false;
        truncated_ = false;
        pending_ = 0;
        return;
    }
    has_fields_ = true;
    if (line.front() == ':') return; // comment
    const auto colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "data") {
        // Bounded as each line and its '\n' add up.
        if (data_length_ + value.size() >= max_event_bytes_) {
            truncated_ = true;
        } else {
            if (data_length_ == 0)
                data_.set(value, !from_piece);
            else
                data_.append_line(value);
            data_length_ += value.size() + 1;
        }
    } else if (name == "event") {
        event_.set(value, !from_piece);
    } else if (name == "id") {
        id_.set(value, !from_piece);
    }
}

} // namespace gw::core
