#!/bin/sh
# Run hutch's whole test suite, as root, the non-root user tests included.
#
# Installs the Debian packages it needs, builds the C programs, installs
# hutch into a fresh virtual environment under a temporary prefix that a
# non-root test user can read, then runs pytest from there. Arguments are
# passed on to pytest. The prefix is removed afterwards.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run-all.sh: run as root: the tests make users, cgroups and namespaces" >&2
    exit 1
fi
sh packaging/install-deps.sh

prefix=$(mktemp -d /tmp/hutch-test.XXXXXX)
chmod 755 "$prefix"
trap 'rm -rf "$prefix"' EXIT INT TERM
/usr/bin/python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --disable-pip-version-check ".[test]"
make -s -C c-helper clean
make -s -C c-helper install PREFIX="$prefix/venv"
make -s -C c-helper clean

export HUTCH_TEST_PREFIX="$prefix/venv"
export HUTCH_LIBEXEC="$prefix/venv/libexec/hutch"
set +e
"$prefix/venv/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "run-all.sh: pytest collected no tests" >&2
fi
exit "$status"
