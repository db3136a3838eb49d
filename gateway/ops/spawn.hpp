// The completion handler every task the gateway spawns gets: an exception that escapes the
// task is logged with what the task was and counted (dify_gateway_task_failures_total),
// instead of leaving io_context::run and ending the process (what net::detached would do).
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <exception>

namespace gw::gateway {

// Spawned tasks ended by an unexpected error, process-wide.
inline std::atomic<std::uint64_t>& task_failures()
{
    static std::atomic<std::uint64_t> count{0};
    return count;
}

inline auto log_failure(const char* what)
{
    return [what](std::exception_ptr e) {
        if (!e) return;
        ++task_failures();
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::error("{} ended by an unexpected error: {}", what, ex.what());
        } catch (...) {
            spdlog::error("{} ended by an unexpected error", what);
        }
    };
}

} // namespace gw::gateway
