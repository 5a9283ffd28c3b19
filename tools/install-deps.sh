#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine (as root).
# Idempotent: apt runs only when a package is missing; pip runs only when
# setup.cfg/pyproject.toml changed since the last successful install.
# Starts nothing (the testbed starts its own per-NVE OVS daemons).
#
# Why Debian's python for the venv: Debian's mininet package installs the
# `mininet` module for /usr/bin/python3 only, so the venv is made from it with
# --system-site-packages; everything else comes from PyPI into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + a font: tests/integration/test_web.py renders the web page
# headless (screenshot, DOM, live update).  etcd-server + etcd-client: the
# cluster of authorities (cluster_backend = etcd; the testbed runs a
# 3-member etcd on loopback; no daemon starts on install).  frr:
# tests/integration/test_evpn_frr.py runs zebra and bgpd as an EVPN VTEP in
# a namespace (no daemon starts on install).
APT_PACKAGES=(openvswitch-switch mininet socat iputils-ping tcpdump iperf3 arping frr
              iproute2 ethtool procps python3-venv python3-dev
              chromium fonts-dejavu-core etcd-server etcd-client)
VENV=.venv
STAMP="$VENV/.nvo3-deps-hash"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${APT_PACKAGES[@]}"
else
    echo "install-deps: apt packages present"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "install-deps: creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import os_ken, pytest' 2>/dev/null; then
    echo "install-deps: pip install -e .[test]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$STAMP"
else
    echo "install-deps: python packages up to date"
fi
