// The completion handler every task the gateway spawns gets: an exception that escapes the
// task is logged with what the task was, instead of leaving io_context::run and ending the
// process (what net::detached would do).
#pragma once

#include <spdlog/spdlog.h>

#include <exception>

namespace gw::gateway {

inline auto log_failure(const char* what)
{
    return [what](std::exception_ptr e) {
        if (!e) return;
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
