// The steps serving a request is made of on the downstream side, shared by the Dify path
// (serve_request) and the OpenAI front (serve_openai). Each answers its own errors, in the
// request's front's shape; a `false` from a step means: do not go on with this connection.
#pragma once

#include "gateway/downstream/serve_request.hpp"
#include "gateway/proxy/exchange.hpp"
#include "gateway/proxy/request_plan.hpp"

#include <boost/beast/http/string_body.hpp>

#include <string>
#include <vector>

namespace gw::gateway {

// What serving a request needs from its session.
struct downstream_request
{
    worker& w;
    const tenant_directory& dir;
    client_socket& down;
    beast::flat_buffer& buffer;
    const std::string& request_id;
    request_record& rec;
};

// Reads the whole body (server.max_request_body_bytes, within client_idle_timeout_ms);
// answers 413/408/400 itself.
net::awaitable<bool> read_whole_body(
    worker& w,
    client_socket& down,
    beast::flat_buffer& buffer,
    client_request_parser<http::string_body>& p,
    const std::string& request_id,
    api_front front
);
// The client's address: the peer, or the last X-Forwarded-For hop when the peer is a
// trusted proxy (nginx in front).
std::string client_address(
    const std::string& peer, const request_head& req, const std::vector<std::string>& trusted
);
// Metrics and the access log for one finished request.
void record_request(worker& w, const request_record& r);
// X-RateLimit-* (and Retry-After when refused) for tenants with a rate.
header_list rate_headers(const admission& a);
// The answer to a quota refusal.
gateway_error quota_error(const config::tenant_config& t, quota_reason r);
// Admits the request against the quotas. A decision the shared store (Redis) makes is a
// span of the request's trace (exported traces).
net::awaitable<admission> admit(worker& w, const request_plan& plan, request_record& rec);
// Counts a request and its admission (usage counters, metrics); the answer to give when
// the quotas refused it.
std::optional<gateway_error> account_admission(worker& w, const request_plan& plan, const admission& a);
// Answers a request refused before its body was read. A small body (<= 64 KiB, chunked or
// not, not awaiting 100-continue) is read and dropped first, then the answer goes out and
// the connection stays usable: a proxy relaying the body as it comes (nginx with
// proxy_request_buffering off) has sent all of it by then, so it keeps its own client's
// connection alive (nginx closes it when an answer ends while it still reads the body).
// A body announced larger gets the answer at once with `Connection: close` (a chunked one
// once 64 KiB of it were read; a small one that does not arrive within 10 s, after those);
// the session then lingers, reading what still comes, so the answer is not lost to a
// reset. True: reusable.
net::awaitable<bool> refuse_early(
    client_socket& down,
    beast::flat_buffer& buffer,
    header_parser& hp,
    const gateway_error& e,
    const std::string& request_id,
    bool keep_alive,
    const header_list& extra,
    api_front front
);
std::size_t field_count(const request_head& h);
// "HTTP/1.1 100 Continue" when the client waits for it before sending its body.
net::awaitable<bool> continue_if_expected(client_socket& down, const request_head& req);
// The exchange of an admitted request, for forward_request, made in `slot` (an exchange
// does not move: its reply parser is Beast's, which does not).
exchange& make_exchange(
    std::optional<exchange>& slot,
    downstream_request& d,
    const request_head& req,
    bool keep_alive,
    request_plan& plan,
    quota_ticket* ticket,
    header_list quota_headers
);

} // namespace gw::gateway
