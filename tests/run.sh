#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what it needs, builds, runs
# unit + integration tests, then builds and runs the suite again under ASan + UBSan.
# Build trees: build/ (RelWithDebInfo) and build-asan/. Extra args go to ctest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/install_deps.sh test
# The official Dify Node SDK, pinned by tests/node/package-lock.json.
[ -d tests/node/node_modules/dify-client ] || (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

jobs=$(nproc)
export CCACHE_DIR=${CCACHE_DIR:-$root/.ccache}

echo "== build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_BUILD_TESTS=ON >/dev/null
cmake --build build -j "$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs" "$@"

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON -DGW_BUILD_TESTS=ON -DGW_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
echo "== tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" "$@"
