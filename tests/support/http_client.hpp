// A small synchronous HTTP/1.1 client for tests (plain or TLS with verification against
// the test CA), with keep-alive and incremental reading of streamed bodies.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/json/value.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gw::test {

struct http_response
{
    int status = 0;
    std::map<std::string, std::string> headers; // lowercase names
    std::string body;
    bool chunked = false;

    std::string header(const std::string& lower_name) const
    {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
    boost::json::value json() const; // throws on invalid JSON
};

using header_list = std::vector<std::pair<std::string, std::string>>;

class http_client
{
public:
    // `tls`: verify the server against test_pki's CA with host name `localhost`.
    http_client(boost::asio::ip::tcp::endpoint ep, bool tls);
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    // Sends a request and reads the whole response. Reconnects when the previous
    // response closed the connection. Throws on transport errors.
    http_response request(const std::string& method, const std::string& target, const header_list& headers = {},
                          const std::string& body = {});

    // Streaming: send, read the head, then read the body piece by piece.
    void send(const std::string& method, const std::string& target, const header_list& headers, const std::string& body);
    http_response read_head();
    // The next piece of body bytes (decoded from chunking); nullopt at the end of the body.
    std::optional<std::string> read_some();
    // Reads until `needle` has appeared in the accumulated body; returns everything read.
    std::string read_until(const std::string& needle);
    // Reads to the end of the body; throws if the connection breaks first.
    std::string read_rest();

    // Sends raw bytes (malformed requests) and reads what comes back until the peer closes.
    std::string raw_exchange(const std::string& bytes);

    bool connected() const;
    void close();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Helpers for Dify-shaped calls.
header_list bearer(const std::string& key, const std::string& content_type = "application/json");
std::string multipart_body(const std::string& boundary, const std::vector<std::tuple<std::string, std::string, std::string, std::string>>& parts);

} // namespace gw::test
