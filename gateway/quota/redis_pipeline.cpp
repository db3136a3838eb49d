#include "gateway/quota/redis_pipeline.hpp"

namespace gw::gateway {

void redis_pipeline::submit(std::shared_ptr<redis_call> call, std::string_view wire)
{
    if (wire.empty() && call->expected > 0)
        call->ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
    if (call->expected == 0 || call->ec) {
        complete(*call);
        return;
    }
    output_.append(wire);
    if (!call->on_message) call->replies.reserve(call->expected); // the replies land in place, one by one
    pending_.push_back(std::move(call));
}

std::chrono::steady_clock::time_point redis_pipeline::oldest_submitted() const
{
    return pending_.empty() ? std::chrono::steady_clock::time_point::max() : pending_.front()->submitted;
}

std::string redis_pipeline::take_output()
{
    std::string out;
    out.swap(output_);
    return out;
}

bool redis_pipeline::feed(const char* data, std::size_t size)
{
    reader_.feed(data, size);
    while (auto reply = reader_.next()) {
        if (pending_.empty()) return false; // unasked: Redis and this side disagree on the stream
        if (pending_.front()->on_message) {
            auto subscription = pending_.front(); // kept alive should the handler end the connection
            subscription->on_message(*reply);
            if (pending_.empty()) break; // it ended the connection: the rest is not read
            continue;
        }
        auto& call = *pending_.front();
        call.replies.push_back(std::move(*reply));
        if (call.replies.size() == call.expected) {
            auto finished = std::move(pending_.front());
            pending_.pop_front();
            complete(*finished);
        }
    }
    return !reader_.failed();
}

void redis_pipeline::fail_all(boost::system::error_code ec)
{
    auto failed = std::move(pending_);
    pending_.clear();
    for (auto& call : failed) {
        call->ec = ec;
        complete(*call);
    }
}

void redis_pipeline::complete(redis_call& call)
{
    call.done = true;
    if (auto wake = std::move(call.on_done)) wake();
}

} // namespace gw::gateway
