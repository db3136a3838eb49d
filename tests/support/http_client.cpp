#include "tests/support/http_client.hpp"

#include "tests/support/test_certs.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json.hpp>

#include <stdexcept>

namespace gw::test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

boost::json::value http_response::json() const
{
    return boost::json::parse(body);
}

struct http_client::impl
{
    tcp::endpoint ep;
    bool tls;
    net::io_context io;
    ssl::context ctx{ssl::context::tls_client};
    std::unique_ptr<beast::tcp_stream> plain;
    std::unique_ptr<ssl::stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    std::optional<http::response_parser<http::buffer_body>> parser;
    bool keep_alive = false;
    char piece[16 * 1024];

    impl(tcp::endpoint e, bool t) : ep(e), tls(t)
    {
        if (tls) {
            ctx.add_certificate_authority(net::buffer(pki().ca_cert_pem));
            ctx.set_verify_mode(ssl::verify_peer);
        }
    }

    beast::tcp_stream& lowest() { return tls ? secure->next_layer() : *plain; }

    template <typename F>
    auto with_stream(F&& f)
    {
        if (tls) return f(*secure);
        return f(*plain);
    }

    void connect()
    {
        buffer.clear();
        if (tls) {
            secure = std::make_unique<ssl::stream<beast::tcp_stream>>(io, ctx);
            secure->set_verify_callback(ssl::host_name_verification("localhost"));
            SSL_set_tlsext_host_name(secure->native_handle(), "localhost");
            secure->next_layer().connect(ep);
            secure->handshake(ssl::stream_base::client);
        } else {
            plain = std::make_unique<beast::tcp_stream>(io);
            plain->connect(ep);
        }
        lowest().expires_never();
        keep_alive = true;
    }

    bool is_open() { return (tls ? secure != nullptr : plain != nullptr) && lowest().socket().is_open(); }

    void drop()
    {
        if (tls ? secure != nullptr : plain != nullptr) {
            beast::error_code ignored;
            lowest().socket().close(ignored);
        }
        secure.reset();
        plain.reset();
        parser.reset();
    }
};

http_client::http_client(tcp::endpoint ep, bool tls) : impl_(std::make_unique<impl>(ep, tls)) {}
http_client::~http_client() = default;

bool http_client::connected() const
{
    return impl_->is_open();
}

void http_client::close()
{
    impl_->drop();
}

void http_client::send(const std::string& method, const std::string& target, const header_list& headers, const std::string& body)
{
    if (!impl_->is_open() || !impl_->keep_alive) {
        impl_->drop();
        impl_->connect();
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "localhost");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
    impl_->with_stream([&](auto& s) { http::write(s, req); });
}

http_response http_client::read_head()
{
    impl_->parser.emplace();
    impl_->parser->body_limit(boost::none);
    impl_->with_stream([&](auto& s) { http::read_header(s, impl_->buffer, *impl_->parser); });
    http_response r;
    const auto& h = impl_->parser->get();
    r.status = static_cast<int>(h.result_int());
    for (const auto& f : h) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
    }
    r.chunked = h.chunked();
    impl_->keep_alive = h.keep_alive();
    return r;
}

std::optional<std::string> http_client::read_some()
{
    auto& p = *impl_->parser;
    while (!p.is_done()) {
        p.get().body().data = impl_->piece;
        p.get().body().size = sizeof impl_->piece;
        beast::error_code ec;
        impl_->with_stream([&](auto& s) { http::read_some(s, impl_->buffer, p, ec); });
        if (ec == http::error::need_buffer) ec = {};
        if (ec) throw beast::system_error(ec);
        std::size_t got = sizeof impl_->piece - p.get().body().size;
        if (got > 0) return std::string(impl_->piece, got);
    }
    if (!impl_->keep_alive) impl_->drop();
    return std::nullopt;
}

std::string http_client::read_until(const std::string& needle)
{
    std::string all;
    while (all.find(needle) == std::string::npos) {
        auto piece = read_some();
        if (!piece) throw std::runtime_error("body ended before \"" + needle + "\"; got: " + all);
        all += *piece;
    }
    return all;
}

std::string http_client::read_rest()
{
    std::string all;
    while (auto piece = read_some()) all += *piece;
    return all;
}

http_response http_client::request(const std::string& method, const std::string& target, const header_list& headers, const std::string& body)
{
    send(method, target, headers, body);
    auto r = read_head();
    r.body = read_rest();
    return r;
}

std::string http_client::raw_exchange(const std::string& bytes)
{
    impl_->drop();
    impl_->connect();
    std::string out;
    impl_->with_stream([&](auto& s) {
        if (!bytes.empty()) net::write(s, net::buffer(bytes));
        beast::error_code ec;
        char buf[4096];
        for (;;) {
            std::size_t n = s.read_some(net::buffer(buf), ec);
            out.append(buf, n);
            if (ec) break;
        }
    });
    impl_->drop();
    return out;
}

header_list bearer(const std::string& key, const std::string& content_type)
{
    header_list h{{"Authorization", "Bearer " + key}};
    if (!content_type.empty()) h.emplace_back("Content-Type", content_type);
    return h;
}

std::string multipart_body(const std::string& boundary, const std::vector<std::tuple<std::string, std::string, std::string, std::string>>& parts)
{
    std::string out;
    for (const auto& [name, filename, type, data] : parts) {
        out += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"";
        if (!filename.empty()) out += "; filename=\"" + filename + "\"";
        out += "\r\n";
        if (!type.empty()) out += "Content-Type: " + type + "\r\n";
        out += "\r\n" + data + "\r\n";
    }
    out += "--" + boundary + "--\r\n";
    return out;
}

} // namespace gw::test
