// The SSE parser as it was before it read events where they lie in the piece: a byte at a
// time, every field copied. Kept for the differential tests of core::sse_parser (the same
// events, fields, end offsets, pending bytes and truncation for any input cut anywhere).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gw::test {

struct reference_sse_event
{
    std::string event, data, id;
    std::size_t end = 0;    // absolute offset just after the event's blank line
    bool truncated = false; // as the parser reported it at the event
    bool operator==(const reference_sse_event&) const = default;
};

class reference_sse_parser
{
public:
    explicit reference_sse_parser(std::size_t max_event_bytes = 1 << 20) : max_(max_event_bytes) {}

    // Feeds `bytes`, which start at absolute offset `base`; events go to `out`.
    void feed(std::string_view bytes, std::size_t base, std::vector<reference_sse_event>& out)
    {
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            const char c = bytes[i];
            ++pending_;
            if (c == '\n' && last_was_cr_) {
                last_was_cr_ = false;
                continue;
            }
            last_was_cr_ = c == '\r';
            if (c == '\r' || c == '\n') {
                line_done(base + i + 1, out);
                continue;
            }
            if (line_.size() < max_)
                line_.push_back(c);
            else
                truncated_ = true;
        }
    }
    std::size_t pending_bytes() const { return pending_; }
    bool truncated() const { return truncated_; }

private:
    void line_done(std::size_t end, std::vector<reference_sse_event>& out)
    {
        if (line_.empty()) {
            if (has_fields_) {
                if (!current_.data.empty() && current_.data.back() == '\n') current_.data.pop_back();
                current_.end = end;
                current_.truncated = truncated_;
                out.push_back(current_);
            }
            current_ = {};
            has_fields_ = false;
            truncated_ = false;
            pending_ = 0;
            return;
        }
        has_fields_ = true;
        std::string_view line = line_;
        if (line.front() == ':') {
            line_.clear();
            return;
        }
        const auto colon = line.find(':');
        const std::string_view field = line.substr(0, colon);
        std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (field == "data") {
            if (current_.data.size() + value.size() < max_) {
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

    std::size_t max_;
    std::string line_;
    reference_sse_event current_;
    bool has_fields_ = false, last_was_cr_ = false, truncated_ = false;
    std::size_t pending_ = 0;
};

} // namespace gw::test
