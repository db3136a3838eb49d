// RESP2 replies from bytes (sans-io, no Asio): hiredis's reply parser fed with whatever
// the socket gave, handing out whole replies as redis_value trees.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

struct redisReader;

namespace gw::gateway {

struct redis_value
{
    enum class kind { nil, string, integer, array, error, status };
    kind type = kind::nil;
    std::string str;   // string, error, status
    long long integer = 0;
    std::vector<redis_value> elements;

    bool is_error() const { return type == kind::error; }
};

class resp_reader
{
public:
    resp_reader();
    ~resp_reader();
    resp_reader(const resp_reader&) = delete;
    resp_reader& operator=(const resp_reader&) = delete;

    void feed(const char* data, std::size_t size);
    // The next whole reply; nullopt when more bytes are needed or the stream is malformed
    // (then failed() is true and stays true: the connection must be dropped).
    std::optional<redis_value> next();
    bool failed() const { return failed_; }

private:
    redisReader* reader_;
    bool failed_ = false;
};

} // namespace gw::gateway
