#!/usr/bin/env bash
# Installs the Debian 12 packages dify-gateway needs, only those missing (idempotent,
# non-interactive). Usage: install_deps.sh [build|test|bench|docker]
#   build: toolchain and libraries (quickstart); test: also the test tools (which include
#   what bench/compare.py needs: nginx, haproxy, Redis, gnuplot, valgrind); bench: the same as test;
#   docker: Debian's Docker engine, docker-compose and debootstrap (the compose stack test).
set -euo pipefail
profile=${1:-build}
[ "$profile" = bench ] && profile=test

build_pkgs=(cmake ninja-build g++ ccache pkg-config openssl ca-certificates
    libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
    libssl-dev libspdlog-dev libhiredis-dev libgtest-dev libgmock-dev libbenchmark-dev)
test_pkgs=(python3 python3-requests python3-flask gunicorn redis-server nginx haproxy gnuplot-nox prometheus clang libclang-rt-14-dev
    valgrind)

docker_pkgs=(docker.io docker-compose debootstrap)

pkgs=("${build_pkgs[@]}")
[ "$profile" = test ] && pkgs+=("${test_pkgs[@]}")
[ "$profile" = docker ] && pkgs=("${docker_pkgs[@]}")

# Node.js and npm (the Node SDK test) may come from Debian or be preinstalled otherwise.
if [ "$profile" = test ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
    pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
