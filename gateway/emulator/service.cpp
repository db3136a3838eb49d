#include "gateway/emulator/service.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <random>

namespace gw::emulator {

namespace json = boost::json;

namespace {

std::function<std::int64_t()> system_clock_seconds()
{
    return [] {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    };
}

std::uint64_t seed_or_random(std::uint64_t seed)
{
    if (seed) return seed;
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

} // namespace

service::service(std::vector<app_def> apps, service_options opts)
    : opts_(std::move(opts)),
      apps_(apps),
      store_(std::make_shared<store>(std::move(apps), opts_.clock ? opts_.clock : system_clock_seconds(), seed_or_random(opts_.seed))),
      api_(store_, api_options{opts_.token_delay})
{
}

dispatch service::handle(const request& req)
{
    if (req.path.starts_with("/_emulator/")) return {control(req), {}};

    dispatch d;
    request_facts facts;
    if (auto header = req.header("X-Emulator-Fault"); !header.empty()) {
        std::string error;
        auto spec = parse_fault(header, error);
        if (!spec) {
            d.rep = error_reply(400, "bad_fault", error);
            stats_.record(req, facts, d.rep.status, std::string(header));
            return d;
        }
        d.fault = *spec;
    } else if (auto spec = faults_.take(req.method, req.path)) {
        d.fault = *spec;
    }

    if (d.fault.replaces_reply()) {
        d.rep = fault_reply(d.fault, api_.app_for(req));
        facts.app_key = std::string(bearer_key(req));
    } else if (d.fault.close || d.fault.reset_after == 0) {
        d.rep.status = 0; // nothing is sent; Dify never saw the request
    } else {
        d.rep = api_.handle(req, facts);
    }
    stats_.record(req, facts, d.rep.status, d.fault.to_string());
    return d;
}

reply service::control(const request& req)
{
    if (req.path == "/_emulator/stats" && req.method == "GET") return json_reply(200, stats_.to_json());
    if (req.path == "/_emulator/reset" && req.method == "POST") {
        stats_.clear();
        faults_.clear();
        store_->clear();
        return json_reply(200, json::object{{"result", "success"}});
    }
    if (req.path == "/_emulator/faults") {
        if (req.method == "GET") return json_reply(200, json::object{{"faults", faults_.to_json()}});
        if (req.method == "DELETE") {
            faults_.clear();
            return json_reply(200, json::object{{"result", "success"}});
        }
        if (req.method == "POST") {
            json::error_code ec;
            auto doc = json::parse(req.body, ec);
            if (ec || !doc.is_object()) return error_reply(400, "bad_request", "body must be a JSON object");
            const auto& o = doc.get_object();
            auto* fault = o.if_contains("fault");
            if (!fault || !fault->is_string()) return error_reply(400, "bad_request", "\"fault\" (string) is required");
            std::string error;
            auto spec = parse_fault(fault->get_string(), error);
            if (!spec) return error_reply(400, "bad_fault", error);
            fault_queue::entry e;
            e.spec = *spec;
            if (auto* v = o.if_contains("count")) {
                if (!v->is_int64() || v->get_int64() < 1) return error_reply(400, "bad_request", "\"count\" must be >= 1");
                e.remaining = static_cast<int>(v->get_int64());
            }
            if (auto* v = o.if_contains("path"); v && v->is_string()) e.path_prefix = std::string(v->get_string());
            if (auto* v = o.if_contains("method"); v && v->is_string()) e.method = std::string(v->get_string());
            faults_.add(std::move(e));
            return json_reply(200, json::object{{"result", "success"}, {"faults", faults_.to_json()}});
        }
        return error_reply(405, "method_not_allowed", "The method is not allowed for the requested URL.");
    }
    return html_not_found();
}

} // namespace gw::emulator
