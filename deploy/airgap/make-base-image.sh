#!/usr/bin/env bash
# Makes the Debian 12 base image the deploy/ images build FROM, where no container
# registry is reachable: debootstrap (minbase) from a Debian mirror (apt's own, or
# DEBIAN_MIRROR), then `docker import`. Needs root, debootstrap and a running Docker engine.
#   deploy/airgap/make-base-image.sh [IMAGE]     (default IMAGE: dify-gateway/debian:bookworm)
# Then build with DEBIAN_IMAGE=IMAGE (docker build --build-arg, or the compose file's
# environment). Skips the work when IMAGE exists already (FORCE=1 makes it again).
set -euo pipefail
image=${1:-dify-gateway/debian:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image exists already"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d /var/tmp/dify-gateway-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror"
# The security and point-release updates too, as the official image has them.
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# Keep the image small and apt quiet, as the official slim image does.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/var/tmp/*
echo 'APT::Install-Recommends "false";' > "$root/etc/apt/apt.conf.d/90no-recommends"
tar -C "$root" --numeric-owner -c . | docker import --change 'CMD ["bash"]' - "$image"
echo "made $image"
