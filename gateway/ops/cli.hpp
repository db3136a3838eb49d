// dify-gateway's command line: --check-config, --version, --help, hash-key.
// Separate from main() so tests can drive it with captured output.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace gw::gateway {

inline constexpr int exit_ok = 0;
inline constexpr int exit_usage = 64;       // bad command line
inline constexpr int exit_bad_config = 2;   // --check-config found problems

// Runs the command in `args` (without argv[0]); returns the process exit code.
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

} // namespace gw::gateway
