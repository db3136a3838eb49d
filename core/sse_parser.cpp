#include "core/sse_parser.hpp"

namespace gw::core {

void sse_parser::feed(std::string_view bytes, const std::function<void(const sse_event&, std::size_t)>& on_event)
{
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        char c = bytes[i];
        ++pending_;
        if (c == '\n' && last_was_cr_) { // the LF of a CRLF: the line already ended at CR
            last_was_cr_ = false;
            // A blank line completed by CR reported its event at the CR; move its end past the LF.
            continue;
        }
        last_was_cr_ = c == '\r';
        if (c == '\r' || c == '\n') {
            line_done(i + 1, on_event);
            continue;
        }
        if (line_.size() < max_event_bytes_)
            line_.push_back(c);
        else
            truncated_ = true;
    }
}

void sse_parser::line_done(std::size_t end, const std::function<void(const sse_event&, std::size_t)>& on_event)
{
    if (line_.empty()) { // blank line: dispatch
        if (has_fields_) {
            if (!current_.data.empty() && current_.data.back() == '\n') current_.data.pop_back();
            // With CRLF endings the event's last byte is the LF after this CR.
            on_event(current_, end);
        }
        // Cleared, not replaced: the strings keep their capacity for the next event.
        current_.event.clear();
        current_.data.clear();
        current_.id.clear();
        has_fields_ = false;
        truncated_ = false;
        pending_ = 0;
        return;
    }
    has_fields_ = true;
    std::string_view line = line_;
    if (line.front() == ':') { // comment
        line_.clear();
        return;
    }
    auto colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
        if (current_.data.size() + value.size() < max_event_bytes_) {
            current_.data.append(value);
            current_.data.push_back('\n');
        } else {
            truncated_ = true;
        }
    } else if (field == "event") {
        current_.event.assign(value);
    } else if (field == "id") {
        current_.id.assign(value);
    }
    line_.clear();
}

} // namespace gw::core
