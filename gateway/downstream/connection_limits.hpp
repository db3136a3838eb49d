// Caps on client connections (abuse limits): at most max_connections_per_client open at
// once from one peer address (trusted proxies exempt: behind nginx every client shares its
// address). Shared by the accept loop and every worker; one short lock per connection.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace gw::gateway {

class connection_limits : public std::enable_shared_from_this<connection_limits>
{
public:
    // `per_client` 0: no per-address limit.
    connection_limits(int per_client, std::vector<std::string> exempt);

    // A slot held for as long as the connection from `address` is open (released when the
    // last copy is destroyed, on any thread); nullptr when the address is at its limit.
    std::shared_ptr<void> try_open(const std::string& address);

private:
    void close(const std::string& address);

    int per_client_;
    std::vector<std::string> exempt_;
    std::mutex m_;
    std::unordered_map<std::string, int> open_;
};

} // namespace gw::gateway
