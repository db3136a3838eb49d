#include "core/token_budget.hpp"

#include <algorithm>

namespace gw::core {

void token_budget::roll(std::int64_t day)
{
    if (day > day_) {
        day_ = day;
        used_ = 0;
        reserved_ = 0;
    }
}

reservation token_budget::reserve(std::int64_t day, std::int64_t estimate)
{
    roll(day);
    reservation r;
    r.day = day_;
    std::int64_t left = limit_ - used_ - reserved_;
    if (left <= 0) return r;
    r.admitted = true;
    r.amount = std::clamp<std::int64_t>(estimate, 0, left);
    reserved_ += r.amount;
    return r;
}

void token_budget::settle(const reservation& r, std::int64_t day, std::int64_t used)
{
    roll(day);
    if (!r.admitted || r.day != day_) return;
    reserved_ = std::max<std::int64_t>(0, reserved_ - r.amount);
    used_ += std::max<std::int64_t>(0, used);
}

std::int64_t token_budget::used(std::int64_t day)
{
    roll(day);
    return day == day_ ? used_ : 0;
}

std::int64_t token_budget::reserved(std::int64_t day)
{
    roll(day);
    return day == day_ ? reserved_ : 0;
}

std::int64_t token_budget::remaining(std::int64_t day)
{
    roll(day);
    return std::max<std::int64_t>(0, limit_ - used_ - reserved_);
}

} // namespace gw::core
