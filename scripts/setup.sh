#!/usr/bin/env bash
# Set up nodewall on a bare Debian machine, as root: the kernel tools the backends drive, the
# PostgreSQL server the store tests start, firewalld and D-Bus (the kernel tests run firewalld
# inside a test namespace as a neighbour of nodewall's table; it is never started on the host),
# microsocks (the lab's SOCKS5 proxy), chromium (the lab report's browser test), Debian's
# python3 with venv (unless PYTHON names another 3.11+),
# and the Python environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nftables libnftables1 iptables ipset conntrack iproute2 procps util-linux postgresql
          firewalld dbus-daemon dbus-bin openssl systemd
          microsocks chromium python3 python3-venv)
if [ "$(id -u)" = 0 ]; then
    missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        if [ -d /run/systemd/system ] && [[ " ${missing[*]} " == *" firewalld "* ]]; then
            # A host running systemd would start firewalld on the host's own firewall: mask it
            # first (the tests start their own firewalld in a namespace).
            systemctl mask firewalld.service
        fi
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    echo "setup: not root, skipping Debian packages (${packages[*]})" >&2
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] && ! "$python" -c 'import ensurepip' 2>/dev/null; then
    echo "setup: $python cannot make a venv (apt-get install python3-venv)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "setup: done ($(.venv/bin/python --version), nodewall $(.venv/bin/python -c 'import nodewall; print(nodewall.__version__)'))"
