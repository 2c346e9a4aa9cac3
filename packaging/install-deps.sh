#!/bin/sh
# Install the Debian packages that hutch and its tests need (run as root).
# hutch itself needs only python3, a C compiler and make; the rest are the
# real peers and inputs of the tests: podman, skopeo and docker.io (archive
# interop), busybox-static (the test image), debootstrap (the benchmark
# image), uidmap (newuidmap/newgidmap), zstd (zstd-compressed layers), attr,
# tmux and util-linux tools, and clang for the C parsers' libFuzzer target.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it calls apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-dev gcc libc6-dev make \
    podman skopeo runc docker.io busybox-static debootstrap uidmap zstd attr tmux \
    util-linux procps iproute2 ca-certificates clang libclang-rt-14-dev >/dev/null
