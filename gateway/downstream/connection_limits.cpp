#include "gateway/downstream/connection_limits.hpp"

#include <algorithm>

namespace gw::gateway {

connection_limits::connection_limits(int per_client, std::vector<std::string> exempt)
    : per_client_(per_client), exempt_(std::move(exempt))
{
}

std::shared_ptr<void> connection_limits::try_open(const std::string& address)
{
    static int unlimited_slot = 0;
    if (per_client_ <= 0 || std::find(exempt_.begin(), exempt_.end(), address) != exempt_.end())
        return std::shared_ptr<void>(&unlimited_slot, [](void*) {});
    {
        std::lock_guard lock(m_);
        auto& n = open_[address];
        if (n >= per_client_) return nullptr;
        ++n;
    }
    return std::shared_ptr<void>(&unlimited_slot, [self = shared_from_this(), address](void*) { self->close(address); });
}

void connection_limits::close(const std::string& address)
{
    std::lock_guard lock(m_);
    auto it = open_.find(address);
    if (it != open_.end() && --it->second <= 0) open_.erase(it);
}

} // namespace gw::gateway
