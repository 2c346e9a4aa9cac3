#!/bin/sh
# Install hutch on a fresh Debian machine and run the main job once.
#
# As root: installs the Debian packages (packaging/install-deps.sh), makes a
# virtual environment in $HUTCH_PREFIX (default /opt/hutch) with hutch in it,
# builds and installs hutch-spawn and hutch-cgroup into
# $HUTCH_PREFIX/libexec/hutch (not setuid), links hutch into /usr/local/bin,
# then runs packaging/demo.sh.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart.sh: run as root (it installs packages)" >&2
    exit 1
fi
prefix=${HUTCH_PREFIX:-/opt/hutch}
sh packaging/install-deps.sh
/usr/bin/python3 -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check .
make -s -C c-helper install PREFIX="$prefix"
make -s -C c-helper clean
ln -sf "$prefix/bin/hutch" /usr/local/bin/hutch
echo "installed hutch in $prefix; /usr/local/bin/hutch links to it"
exec sh packaging/demo.sh
