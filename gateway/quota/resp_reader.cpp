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

// The value `task` reads, default (nil) until the caller fills it in: the parent's slot for
// an element, a new root otherwise.
redis_value* slot_for(const redisReadTask* task)
{
    if (task->parent) {
        auto* parent = static_cast<redis_value*>(task->parent->obj);
        return &parent->elements.at(static_cast<std::size_t>(task->idx));
    }
    return new redis_value;
}

void* create_string(const redisReadTask* task, char* str, std::size_t len)
{
    auto* v = slot_for(task);
    v->type = task->type == REDIS_REPLY_ERROR    ? redis_value::kind::error
              : task->type == REDIS_REPLY_STATUS ? redis_value::kind::status
                                                 : redis_value::kind::string;
    v->str.assign(str, len);
    return v;
}

void* create_array(const redisReadTask* task, int elements)
{
    if (elements < 0 || elements > max_reply_elements) return nullptr; // hiredis: out of memory -> error
    auto* v = slot_for(task);
    v->type = redis_value::kind::array;
    v->elements.resize(static_cast<std::size_t>(elements));
    return v;
}

void* create_integer(const redisReadTask* task, long long value)
{
    auto* v = slot_for(task);
    v->type = redis_value::kind::integer;
    v->integer = value;
    return v;
}

void* create_nil(const redisReadTask* task)
{
    return slot_for(task);
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
