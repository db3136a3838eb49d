// Internal to gateway/: what one proxied request carries from the tenant's request to
// the end of Dify's response, and the helpers that build the upstream request.
#pragma once

#include "core/dify_routes.hpp"
#include "core/span.hpp"
#include "core/stream_facts.hpp"
#include "core/user_rewrite.hpp"
#include "gateway/ops/logging.hpp"
#include "gateway/proxy/openai_front.hpp"
#include "gateway/downstream/request_checks.hpp"
#include "gateway/downstream/serve_request.hpp"
#include "gateway/quota/quota.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gw::gateway {

namespace http = beast::http;
using tls_stream = tls_socket;

inline constexpr std::size_t piece_size = 8 * 1024; // bytes read per step of a relay

// The request as it goes to Dify. Its head is kept as text, not as Beast fields (one
// allocation per field): what changes between attempts (the app key when keys rotate, the
// attempt's traceparent) is written when the head is (append_upstream_head).
struct upstream_request
{
    std::string_view method; // the client's (its request head outlives the exchange)
    recycled_string target;  // base path + "/v1" + Dify's path [+ "?" + query]
    recycled_string fields;  // every other header, each "Name: value\r\n"
    std::string traceparent; // the attempt's trace context ("" when none goes)
    std::string owned_body;      // rewritten JSON, or the original body
    core::body_splice splice;    // multipart: pieces of the original body and inserted text
    bool spliced = false;
    std::string namespaced_user; // for the stop call
};

// Everything one exchange needs.
struct exchange
{
    worker& w;
    const tenant_directory& dir; // the configuration this request started with
    client_socket& down;
    beast::flat_buffer& down_buffer;
    const request_head& req;
    const tenant& who;
    app_target target;
    const std::string& request_id; // the request record's
    bool client_keep_alive;
    quota_ticket* ticket = nullptr;       // the request's quota (slots, token reservation)
    header_list quota_headers;            // X-RateLimit-* for tenants with a rate
    std::optional<std::int64_t> usage{};  // LLM tokens Dify reported for this request
    std::string body{};                                       // read whole (rewrite cases)
    client_request_parser<http::buffer_body>* streamed = nullptr; // or streamed from the client
    bool body_sent = false;       // streamed bytes went upstream: the request cannot be replayed
    bool client_gone = false;     // the client closed its connection during the SSE relay
    bool client_broken = false;   // reading the client's body failed
    bool body_timed_out = false;  // the client's body did not arrive within client_idle_timeout_ms
    bool task_known = false;      // the SSE relay has seen the task id (a stop call is possible)
    upstream_request up{};
    std::string_view api_key{}; // the app's key: owned by the configuration snapshot the request started with
    std::unique_ptr<net::steady_timer> timer{}; // backoff between attempts (made on first use: most requests make one attempt)
    request_record* rec = nullptr;          // what the access log and metrics get
    bool generating = false;                // starts an LLM generation (not idempotent)
    core::user_place place = core::user_place::none; // where Dify reads `user` on this endpoint
    core::json_references refs{};           // what a JSON body refers to (conversation, files)
    bool uploads_file = false;              // POST /files/upload: the reply names a new file
    openai_turn* openai = nullptr;          // a turn of the OpenAI front: its reply is translated
    image_upload* upload = nullptr;         // with openai: an image of the turn uploaded first (its reply kept, not relayed)
    int attempts = 0;                       // this exchange's attempts so far (an OpenAI turn may make several exchanges)
    core::span_id attempt_id{};             // the current attempt's span: the parent in the traceparent Dify gets
    std::unique_ptr<core::span> attempt_span{}; // its CLIENT span (exported traces), until the attempt ends
    head_fields* client_fields = nullptr;  // req's fields, when the exchange may clear them (release_sent_request)
    // The call to Dify: its pool (kept: a reload may retire it meanwhile), the connection the
    // current attempt borrowed, and the reply being read on it.
    std::shared_ptr<upstream_pool> pool{};
    upstream_pool::lease lease{};
    std::optional<dify_reply_parser<http::buffer_body>> reply{};
    // An SSE reply may be handed over to the session once its head has gone out
    // (request_scope): `allowed` by the request path that owns the exchange through a
    // request_scope; `pending` once relay_dify has handed it over, the rest is then up to
    // relay_handed_stream.
    struct
    {
        bool allowed = false, pending = false;
        bool tls = false;        // the stream's connection is TLS (relay_sse<tls_stream>)
        bool keep_alive = false; // whether the client connection may be reused after the stream
    } handoff{};
};

// What a request owns from its head until its answer ends, in one heap block (from the
// thread's recycled blocks): its record (metrics and the access line are written when the
// scope ends) and the configuration it started with; on the Dify front also its quota
// ticket, the request read whole and the exchange with Dify (the OpenAI front keeps those
// in serve_openai's frame). Made by serve_request for every request, refused ones too.
// When Dify answers with an SSE stream, it is handed over with the stream to the session
// once the stream's head has gone out (exchange::handoff), so that the request path's
// frames (serve_request, forward_whole_body, forward_request, forward, relay_response,
// relay_dify) end while the stream runs.
struct request_scope final : recycled_allocation<request_scope>
{
    request_scope(worker& w, std::shared_ptr<const tenant_directory> snapshot) : w(w), snapshot(std::move(snapshot)) {}
    ~request_scope(); // the exchange, the request and the ticket end first; then the request is recorded
    request_scope(const request_scope&) = delete;
    request_scope& operator=(const request_scope&) = delete;

    worker& w;
    std::shared_ptr<const tenant_directory> snapshot;
    request_record rec;
    std::unique_ptr<quota_ticket> ticket;
    std::optional<client_request_parser<http::string_body>> body;
    std::optional<exchange> x;
};

// The largest body of a refused request that is read and dropped (so the connection stays
// usable) rather than answered with `Connection: close`.
inline constexpr std::uint64_t max_dropped_body = 64 * 1024;

// The exchange's backoff timer (made on first use).
net::steady_timer& timer_for(exchange& x);
// A gateway error for this request (status recorded, quota headers added). A streamed
// body still unread is read and dropped when small, otherwise the connection closes: its
// bytes must never be parsed as the next request.
net::awaitable<bool> write_error(exchange& x, const gateway_error& e);
// Whether the client connection may serve another request after this one: the client
// wants it, the gateway is not draining, and the request's body was read to its end.
bool client_reusable(const exchange& x);
// Writes to the client within server.client_send_timeout_ms (a client that does not take
// the bytes is dropped: ec is timeout, the connection will close with a reset, and the
// exchange releases its upstream connection and quota slot). Most writes fit in the
// socket's send buffer: they go in one non-blocking send (the session's socket is in
// non-blocking mode), with no deadline and no trip through the event loop; only what does
// not fit is written asynchronously, within the deadline.
template <typename Buffers>
net::awaitable<std::tuple<error_code, std::size_t>> send_to_client(exchange& x, Buffers buffers)
{
    error_code sec;
    const std::size_t sent = x.down.write_some(buffers, sec);
    if (!sec && sent == net::buffer_size(buffers)) co_return std::tuple{sec, sent};
    if (sec && sec != net::error::would_block && sec != net::error::try_again) co_return std::tuple{sec, sent};
    beast::buffers_suffix<Buffers> rest(buffers);
    rest.consume(sent);
    client_deadline deadline(x.down, x.dir.config().server.client_send_timeout_ms);
    auto [ec, n] = co_await net::async_write(x.down, rest, use_nothrow);
    n += sent;
    if (deadline.fired()) {
        ec = beast::error::timeout;
        // Closed with a reset: the bytes it did not take are dropped with the connection,
        // instead of the kernel trickling them to it long after.
        error_code ignored;
        x.down.set_option(net::socket_base::linger(true, 0), ignored);
    }
    co_return std::tuple{ec, n};
}

bool valid_request_id(std::string_view id);
// The Host header for an upstream: the port only when it is not the scheme's default.
std::string host_header(const config::upstream_config& u);
// The request Dify gets: target, headers, the app's key, `user` namespaced (x.up); or the
// error to answer when the body cannot be rewritten safely.
std::optional<gateway_error> build_upstream_request(exchange& x);
// The body as buffers: the owned string, or the splice's pieces over the original body.
// The body's buffers (a splice has a few pieces; kept inline up to four).
using body_buffer_list = boost::container::small_vector<net::const_buffer, 4>;
body_buffer_list body_buffers(exchange& x, const std::string& original);
// Bodies up to this size are copied behind the head and sent in one write.
inline constexpr std::size_t coalesce_limit = 64 * 1024;
// The room an upstream connection's read buffer keeps for Dify's replies (a blocking
// reply's head and body usually fit; a longer one is read on in pieces).
inline constexpr std::size_t reply_read_room = 4096;
// Appends "Name: value\r\n".
void append_field(recycled_string& out, std::string_view name, std::string_view value);
// Appends the request head Dify gets: request line, x.up.fields, the app key's
// Authorization, the trace context and the blank line.
void append_upstream_head(recycled_string& out, const exchange& x);

bool is_timeout(const error_code& ec);
// 504 for timeouts, 502 otherwise; no internal detail.
gateway_error upstream_failure(const error_code& ec, std::string_view phase);
// Records the tenant as the owner of what Dify's reply or stream created (task — only
// while it may still run: on a stream, or named with a workflow run, which a blocking
// reply can leave paused; a blocking message reply comes when its task is over —,
// conversation, workflow run, uploaded file), once each.
struct created_records
{
    bool task = false, conversation = false, workflow_run = false, file = false, message = false;
    std::size_t forms = 0; // form tokens recorded so far
};
void record_created(exchange& x, const core::stream_facts& facts, created_records& done, bool streaming);
// What the request names that a tenant may own: in its path or query, and (JSON bodies)
// the conversation it continues and the files it refers to. Usually nothing.
std::vector<core::owned_reference> named_resources(const exchange& x);
// Refuses a request that names another tenant's task, conversation, workflow run or file
// (404, before anything reaches Dify).
net::awaitable<std::optional<gateway_error>> check_ownership(exchange& x, std::vector<core::owned_reference> refs);

// The current attempt's traceparent on the request Dify gets, and its CLIENT span
// (exported traces). With no exporter the caller's traceparent goes as it came.
// Gives back the memory of the request Dify got (body, head, and the client's header
// fields when client_fields names them), once its reply is being relayed and no attempt
// can follow: a long stream does not hold it. The client's method and target stay.
void release_sent_request(exchange& x);
void begin_attempt_span(exchange& x);
// Ends the attempt's span, if open: Dify's status (0: none came) or the failure.
void end_attempt_span(exchange& x, unsigned status, const error_code& failure = {});

// The end of a relayed reply: the upstream connection given back (kept when `up_ok`), the
// attempt's span ended, the usage Dify reported counted and charged. Returns whether the
// client connection may be reused.
bool settle_relayed_reply(exchange& x, bool down_ok, bool up_ok, bool keep_alive);

// Calls Dify's stop endpoint for this request's task (detached), when it started one.
void spawn_stop_call(exchange& x, std::string_view task_id);

template <typename S>
S& stream_of(upstream_connection& c);
template <>
inline beast::tcp_stream& stream_of<beast::tcp_stream>(upstream_connection& c)
{
    return c.plain();
}
template <>
inline tls_stream& stream_of<tls_stream>(upstream_connection& c)
{
    return c.tls();
}

} // namespace gw::gateway
