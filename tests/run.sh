#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what it needs, builds, runs
# unit + integration tests, then the suite again under ASan + UBSan, the libFuzzer targets
# for GW_FUZZ_SECONDS each (default 20) on their corpus, and the gateway's multi-worker
# tests under ThreadSanitizer. Build trees: build/ (RelWithDebInfo), build-asan/,
# build-fuzz/ (clang), build-tsan/. Extra args go to the first two ctest runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/install_deps.sh test
# The official Dify and OpenAI Node SDKs, pinned by tests/node/package-lock.json.
[ -d tests/node/node_modules/dify-client ] && [ -d tests/node/node_modules/openai ] ||
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

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

echo "== fuzz (libFuzzer + ASan + UBSan, ${GW_FUZZ_SECONDS:-20} s per target)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DGW_FUZZ=ON -DGW_FUZZ_SECONDS="${GW_FUZZ_SECONDS:-20}" >/dev/null
cmake --build build-fuzz -j "$jobs"
ctest --test-dir build-fuzz --output-on-failure -j "$jobs"

echo "== build (TSan): the gateway tests, which run several workers"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_TSAN=ON -DGW_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$jobs" --target gw_gateway_tests dify-gateway
echo "== tests (TSan)"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/gw_gateway_tests --gtest_brief=1

echo "== deploy (Docker): images built on a Debian base made here, the compose stack run for real"
deploy/install_deps.sh docker
rc=0
/usr/bin/python3 tests/deploy/test_docker_stack.py || rc=$?
if [ "$rc" -eq 77 ]; then
    echo "== deploy (Docker): SKIPPED: no Docker engine could be started on this machine"
elif [ "$rc" -ne 0 ]; then
    exit "$rc"
fi
