#include "core/preconnect.hpp"

#include <algorithm>
#include <cmath>

namespace gw::core {

preconnect_plan::preconnect_plan(double ratio, int max_connections, nanos window, nanos backoff)
    : ratio_(ratio), max_connections_(max_connections), window_(std::max(window, nanos(1))), backoff_(backoff)
{
}

void preconnect_plan::rotate(nanos now)
{
    const auto passed = (now - window_start_) / window_; // whole windows: a peak counts for one to two
    if (passed <= 0) return;
    // One window passed: the current peak becomes the previous one; two or more: both are old.
    peak_[0] = passed == 1 ? peak_[1] : 0;
    peak_[1] = 0;
    window_start_ += passed * window_;
}

void preconnect_plan::leased(int n, nanos now)
{
    rotate(now);
    peak_[1] = std::max(peak_[1], n);
}

int preconnect_plan::wanted(nanos now)
{
    if (!enabled()) return 0;
    rotate(now);
    const int peak = std::max(peak_[0], peak_[1]);
    // The small epsilon keeps 1.5 × 2 at 3 where floating point would make it 3.0000000000000004.
    const double want = std::ceil(ratio_ * peak - 1e-9);
    return static_cast<int>(std::min<double>(want, max_connections_));
}

int preconnect_plan::to_open(int open, nanos now)
{
    if (now < paused_until_) return 0;
    return std::max(0, wanted(now) - open);
}

} // namespace gw::core
