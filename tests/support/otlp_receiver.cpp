#include "tests/support/otlp_receiver.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/algorithm/string/case_conv.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>

namespace gw::test {

namespace net = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

otlp_receiver::otlp_receiver() : acceptor_(io_, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0))
{
    thread_ = std::thread([this] {
        for (;;) {
            boost::system::error_code ec;
            net::ip::tcp::socket socket(io_);
            acceptor_.accept(socket, ec);
            if (ec) return; // shut down by the destructor
            std::lock_guard lock(m_);
            fds_.push_back(socket.native_handle());
            connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
        }
    });
}

otlp_receiver::~otlp_receiver()
{
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR); // wakes the blocking accept
    thread_.join();
    {
        std::lock_guard lock(m_);
        for (int fd : fds_) ::shutdown(fd, SHUT_RDWR); // wakes blocking reads
    }
    for (auto& t : connections_) t.join();
}

std::string otlp_receiver::url() const
{
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/v1/traces";
}

// One connection at a time (each worker keeps one): requests until it closes.
void otlp_receiver::serve(net::ip::tcp::socket socket)
{
    struct forget_fd // before the socket closes: its number may be reused
    {
        otlp_receiver& r;
        int fd;
        ~forget_fd()
        {
            std::lock_guard lock(r.m_);
            std::erase(r.fds_, fd);
        }
    } forget{*this, socket.native_handle()};
    boost::beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        boost::system::error_code ec;
        http::read(socket, buffer, req, ec);
        if (ec) return;
        unsigned status = 200;
        {
            std::lock_guard lock(m_);
            ++exports_;
            last_headers_.clear();
            for (const auto& f : req) last_headers_.emplace_back(boost::to_lower_copy(std::string(f.name_string())), std::string(f.value()));
            if (fail_left_ > 0) {
                --fail_left_;
                status = fail_status_;
            } else {
                try {
                    auto doc = json::parse(req.body());
                    for (const auto& rs : doc.at("resourceSpans").as_array())
                        for (const auto& ss : rs.at("scopeSpans").as_array())
                            for (const auto& s : ss.at("spans").as_array()) spans_.push_back(s.as_object());
                } catch (const std::exception&) { // the test sees no spans, and a 400
                    status = 400;
                }
            }
        }
        changed_.notify_all();
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.set(http::field::content_type, "application/json");
        res.body() = "{}";
        res.prepare_payload();
        http::write(socket, res, ec);
        if (ec) return;
    }
}

std::vector<json::object> otlp_receiver::spans()
{
    std::lock_guard lock(m_);
    return spans_;
}

std::vector<json::object> otlp_receiver::wait_for(const std::function<bool(const std::vector<json::object>&)>& done)
{
    std::unique_lock lock(m_);
    changed_.wait_for(lock, std::chrono::seconds(10), [&] { return done(spans_); });
    return spans_;
}

void otlp_receiver::fail_next(int n, unsigned status)
{
    std::lock_guard lock(m_);
    fail_left_ = n;
    fail_status_ = status;
}

int otlp_receiver::exports() const
{
    std::lock_guard lock(m_);
    return exports_;
}

std::vector<std::pair<std::string, std::string>> otlp_receiver::last_headers()
{
    std::lock_guard lock(m_);
    return last_headers_;
}

json::value attribute(const json::object& span, std::string_view key)
{
    for (const auto& a : span.at("attributes").as_array())
        if (a.at("key").as_string() == key) return a.at("value");
    return nullptr;
}

} // namespace gw::test
