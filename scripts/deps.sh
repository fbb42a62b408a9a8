#!/bin/sh
# scripts/deps.sh SET - install the Debian packages SET needs, if missing.
#
# SET is one of: check (build + tests), bench, fuzz, run.  Only packages that
# are not installed are passed to apt-get; nothing is installed when all are
# present.  Needs root (or sudo) only when something is missing.
set -eu
base="build-essential pkg-config check libssl-dev apache2 apache2-dev
      libapr1-dev libaprutil1-dev libcurl4-openssl-dev curl"
case "${1:-check}" in
check) want="$base chromium" ;; # chromium: the session browser test
run) want="$base" ;;
bench) want="$base wrk nginx-light redis-server" ;;
fuzz) want="$base clang libclang-rt-dev" ;;
*) echo "deps.sh: unknown set '$1' (check, run, bench, fuzz)" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps.sh: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    echo "deps.sh: not root and no sudo; install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps servers (apache2, nginx, redis) from pulling
# in extras; policy-rc.d stops Debian from starting them as services.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
