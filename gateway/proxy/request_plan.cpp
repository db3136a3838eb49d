#include "gateway/proxy/request_plan.hpp"

#include "gateway/downstream/request_checks.hpp"
#include "gateway/http_fields.hpp"

namespace gw::gateway {

request_plan plan_request(const tenant_directory& dir, const request_head& head, key_memo* memo)
{
    request_plan plan;
    // What Dify's stack could read differently is refused before anything else; the
    // connection closes, since the request's framing may itself be in doubt.
    if (auto ambiguous = check_request_head(head)) {
        plan.refusal = std::move(ambiguous);
        plan.close_after_refusal = true;
        return plan;
    }
    std::string why;
    std::string_view target = head.target();
    auto path = core::canonicalize_path(target.substr(0, target.find('?')), &why);
    if (!path) {
        plan.refusal =
            gateway_error{400, "bad_request", "The request path cannot be read unambiguously: " + why + "."};
        return plan;
    }
    const auto& seg = path->segments;
    const bool openai = seg.size() >= 2 && seg[0] == "openai" && seg[1] == "v1";
    if (openai) {
        const bool chat = seg.size() == 4 && seg[2] == "chat" && seg[3] == "completions";
        const bool models = seg.size() == 3 && seg[2] == "models";
        plan.front = chat ? api_front::openai_chat : api_front::openai_models;
        const auto wanted = chat ? boost::beast::http::verb::post : boost::beast::http::verb::get;
        if (!chat && !models) {
            plan.refusal = gateway_error{404, "not_found", "The OpenAI-compatible front serves /chat/completions and /models."};
            return plan;
        }
        if (head.method() != wanted) {
            plan.refusal = gateway_error{405, "method_not_allowed", "The method is not allowed for the requested URL."};
            return plan;
        }
    }
    gateway_error err;
    const auto authorization = field_value(head, boost::beast::http::field::authorization);
    plan.who = memo ? dir.authenticate(authorization, err, *memo) : dir.authenticate(authorization, err);
    if (!plan.who) {
        plan.refusal = err;
        return plan;
    }
    plan.pair = plan.who->unrouted;
    if (openai) return plan; // the app is named in the body
    plan.target = dir.route(*plan.who, head.method_string(), *path, err);
    if (!plan.target) {
        plan.refusal = err;
        return plan;
    }
    plan.pair = plan.target->pair;
    plan.route = plan.target->match.route;
    plan.endpoint = endpoint_id(plan.route);
    plan.generates = plan.route && plan.route->generating;
    plan.place = plan.route ? plan.route->place : core::user_place::anywhere;
    plan.uploads_file = plan.route && plan.route->creates_file;
    return plan;
}

} // namespace gw::gateway
