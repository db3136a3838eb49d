// A throwaway CA and a server certificate for localhost / 127.0.0.1, generated in memory
// with OpenSSL at test start: loopback TLS tests need no files and no network.
#pragma once

#include <string>

namespace gw::test {

struct test_pki
{
    std::string ca_cert_pem;
    std::string server_cert_pem; // signed by the CA; SAN: DNS:localhost, IP:127.0.0.1; server and client auth
    std::string server_key_pem;
};

// Generated once per process and cached.
const test_pki& pki();

} // namespace gw::test
