#include "gateway/emulator/faults.hpp"

#include "core/text.hpp"

#include <boost/beast/http/status.hpp>
#include <boost/json.hpp>

#include <charconv>

namespace gw::emulator {

namespace json = boost::json;

bool fault_spec::empty() const
{
    return status == 0 && !concurrency && !close && !reset_after && stall_ms == 0 && trickle_ms == 0 &&
           !malformed_sse && !error_event;
}

std::string fault_spec::to_string() const
{
    std::string out;
    auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
    if (status) add("status=" + std::to_string(status));
    if (retry_after) add("retry_after=" + std::to_string(*retry_after));
    if (concurrency) add("concurrency");
    if (close) add("close");
    if (reset_after) add("reset_after=" + std::to_string(*reset_after));
    if (stall_ms) add("stall_ms=" + std::to_string(stall_ms));
    if (after) add("after=" + std::to_string(*after));
    if (trickle_ms) add("trickle_ms=" + std::to_string(trickle_ms));
    if (malformed_sse) add("malformed_sse");
    if (error_event) add("error_event");
    return out;
}

std::optional<fault_spec> parse_fault(std::string_view text, std::string& error)
{
    fault_spec f;
    for (auto item : core::split(text, ';')) {
        item = core::trim(item);
        if (item.empty()) continue;
        auto eq = item.find('=');
        std::string key(core::trim(item.substr(0, eq)));
        std::optional<int> number;
        if (eq != std::string_view::npos) {
            auto v = core::trim(item.substr(eq + 1));
            int n = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || p != v.data() + v.size() || n < 0 || n > 3'600'000) {
                error = "fault " + key + ": expected a non-negative integer, got \"" + std::string(v) + "\"";
                return std::nullopt;
            }
            number = n;
        }
        auto need_number = [&]() -> bool {
            if (!number) error = "fault " + key + " needs a value (" + key + "=N)";
            return number.has_value();
        };
        auto need_flag = [&]() -> bool {
            if (number) error = "fault " + key + " takes no value";
            return !number;
        };
        if (key == "status") {
            if (!need_number()) return std::nullopt;
            if (*number < 100 || *number > 599) {
                error = "fault status must be between 100 and 599";
                return std::nullopt;
            }
            f.status = *number;
        } else if (key == "retry_after") {
            if (!need_number()) return std::nullopt;
            f.retry_after = *number;
        } else if (key == "reset_after") {
            if (!need_number()) return std::nullopt;
            f.reset_after = *number;
        } else if (key == "stall_ms") {
            if (!need_number()) return std::nullopt;
            f.stall_ms = *number;
        } else if (key == "after") {
            if (!need_number()) return std::nullopt;
            f.after = *number;
        } else if (key == "trickle_ms") {
            if (!need_number()) return std::nullopt;
            f.trickle_ms = *number;
        } else if (key == "concurrency") {
            if (!need_flag()) return std::nullopt;
            f.concurrency = true;
        } else if (key == "close") {
            if (!need_flag()) return std::nullopt;
            f.close = true;
        } else if (key == "malformed_sse") {
            if (!need_flag()) return std::nullopt;
            f.malformed_sse = true;
        } else if (key == "error_event") {
            if (!need_flag()) return std::nullopt;
            f.error_event = true;
        } else {
            error = "unknown fault \"" + key +
                    "\" (known: status, retry_after, concurrency, close, reset_after, stall_ms, after, trickle_ms, "
                    "malformed_sse, error_event)";
            return std::nullopt;
        }
    }
    if (f.retry_after && !f.status) {
        error = "fault retry_after goes with status";
        return std::nullopt;
    }
    return f;
}

reply fault_reply(const fault_spec& f, const app_def* app)
{
    reply r;
    if (f.concurrency) {
        int limit = app && app->max_active_requests > 0 ? app->max_active_requests : 1;
        r = error_reply(
            400, "invalid_param",
            "Too many requests. Please try again later. The current maximum concurrent requests allowed for `" +
                (app ? app->id : std::string("unknown")) + "` is `" + std::to_string(limit) + "`."
        );
    } else if (f.status == 429) {
        r = error_reply(429, "rate_limit_error", "Rate limit exceeded, please try again later.");
    } else if (f.status == 500) {
        r = json_reply(500, json::object{{"message", "Internal Server Error"}, {"code", "unknown"}, {"status", 500}});
    } else if (f.status == 502 || f.status == 503 || f.status == 504) {
        auto reason = std::string(boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(f.status)));
        auto line = std::to_string(f.status) + " " + reason;
        r.status = f.status;
        r.content_type = "text/html";
        r.body = "<html>\r\n<head><title>" + line + "</title></head>\r\n<body>\r\n<center><h1>" + line +
                 "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    } else {
        auto reason = std::string(boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(f.status)));
        std::string code = core::to_lower(reason);
        for (char& ch : code)
            if (ch == ' ' || ch == '-') ch = '_';
        r = error_reply(f.status, code, reason + " (injected by dify-emulator)");
    }
    if (f.retry_after) r.headers.emplace_back("Retry-After", std::to_string(*f.retry_after));
    return r;
}

std::optional<fault_spec> fault_queue::take(std::string_view method, std::string_view path)
{
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (!it->method.empty() && !core::iequals(it->method, method)) continue;
        if (!it->path_prefix.empty() && !path.starts_with(it->path_prefix)) continue;
        auto spec = it->spec;
        if (--it->remaining <= 0) entries_.erase(it);
        return spec;
    }
    return std::nullopt;
}

json::value fault_queue::to_json() const
{
    json::array out;
    for (const auto& e : entries_)
        out.push_back(json::object{{"method", e.method}, {"path", e.path_prefix}, {"remaining", e.remaining},
                                   {"fault", e.spec.to_string()}});
    return out;
}

} // namespace gw::emulator
