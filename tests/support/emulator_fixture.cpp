#include "tests/support/emulator_fixture.hpp"

#include "tests/support/test_certs.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/json.hpp>

namespace gw::test {

namespace {

std::shared_ptr<boost::asio::ssl::context> server_tls()
{
    namespace ssl = boost::asio::ssl;
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain(boost::asio::buffer(pki().server_cert_pem));
    ctx->use_private_key(boost::asio::buffer(pki().server_key_pem), ssl::context::pem);
    return ctx;
}

} // namespace

running_emulator::running_emulator(emulator::service_options opts, bool tls, std::vector<emulator::app_def> apps, std::uint16_t port,
                                   std::chrono::milliseconds connect_delay)
    : tls_(tls), svc_(std::move(apps), std::move(opts))
{
    emulator::server_options so{"127.0.0.1", port, tls ? server_tls() : nullptr, connect_delay};
    server_ = std::make_unique<emulator::server>(io_, svc_, so);
    endpoint_ = server_->endpoint();
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
}

running_emulator::~running_emulator()
{
    boost::asio::post(io_, [this] {
        server_->stop();
        io_.stop();
    });
    thread_.join();
}

void running_emulator::drain(std::chrono::milliseconds limit, std::function<void()> quiet)
{
    boost::asio::post(io_, [this, limit, quiet = std::move(quiet)]() mutable { server_->drain(limit, std::move(quiet)); });
}

boost::json::value running_emulator::stats() const
{
    auto c = client();
    return c->request("GET", "/_emulator/stats").json();
}

} // namespace gw::test
