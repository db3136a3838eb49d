#include "gateway/quota/resp_reader.hpp"

#include <hiredis/read.h>

#include <memory>
#include <stdexcept>

namespace gw::gateway {

namespace {

// hiredis builds replies through these callbacks, straight into redis_value trees: the
// root is heap-allocated (handed out by next()); children live in their parent's
// elements, sized when the array header arrives. Arrays above max_reply_elements are
// refused (a malformed or hostile peer announcing "*1000000000" would otherwise make
// hiredis allocate gigabytes up front): the reader then reports an error.
constexpr int max_reply_elements = 65'536;

redis_value* place(const redisReadTask* task, redis_value v)
{
    if (task->parent) {
        auto* parent = static_cast<redis_value*>(task->parent->obj);
        auto& slot = parent->elements.at(static_cast<std::size_t>(task->idx));
        slot = std::move(v);
        return &slot;
    }
    return new redis_value(std::move(v));
}

void* create_string(const redisReadTask* task, char* str, std::size_t len)
{
    redis_value v;
    v.type = task->type == REDIS_REPLY_ERROR    ? redis_value::kind::error
             : task->type == REDIS_REPLY_STATUS ? redis_value::kind::status
                                                : redis_value::kind::string;
    v.str.assign(str, len);
    return place(task, std::move(v));
}

void* create_array(const redisReadTask* task, int elements)
{
    if (elements < 0 || elements > max_reply_elements) return nullptr; // hiredis: out of memory -> error
    redis_value v;
    v.type = redis_value::kind::array;
    v.elements.resize(static_cast<std::size_t>(elements));
    return place(task, std::move(v));
}

void* create_integer(const redisReadTask* task, long long value)
{
    redis_value v;
    v.type = redis_value::kind::integer;
    v.integer = value;
    return place(task, std::move(v));
}

void* create_nil(const redisReadTask* task)
{
    return place(task, redis_value{});
}

void free_object(void* root) // hiredis frees only roots (a reply it abandons on an error)
{
    delete static_cast<redis_value*>(root);
}

redisReplyObjectFunctions reply_functions{create_string, create_array, create_integer, create_nil, free_object};

} // namespace

resp_reader::resp_reader() : reader_(redisReaderCreateWithFunctions(&reply_functions))
{
    if (!reader_) throw std::runtime_error("redisReaderCreate failed");
}

resp_reader::~resp_reader()
{
    redisReaderFree(reader_);
}

void resp_reader::feed(const char* data, std::size_t size)
{
    if (!failed_ && redisReaderFeed(reader_, data, size) != REDIS_OK) failed_ = true;
}

std::optional<redis_value> resp_reader::next()
{
    if (failed_) return std::nullopt;
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
        failed_ = true;
        return std::nullopt;
    }
    if (!raw) return std::nullopt;
    std::unique_ptr<redis_value> root(static_cast<redis_value*>(raw));
    return std::move(*root);
}

} // namespace gw::gateway
