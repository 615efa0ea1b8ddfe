#!/usr/bin/env bash
# Installs the proxies the benchmark measures beside hopper (tinyproxy and
# dante-server, from Debian's packages) when they are missing. Run as root or
# with sudo available; `make bench-peers` calls it.
set -euo pipefail

missing=()
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || missing+=(tinyproxy)
command -v danted >/dev/null 2>&1 || [ -x /usr/sbin/danted ] || missing+=(dante-server)
if [ ${#missing[@]} -eq 0 ]; then
	echo "bench peers: tinyproxy and dante-server already installed"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi
echo "bench peers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# The packages' own services are not wanted: the harness starts each peer
# itself on a loopback port with a generated config. A temporary
# policy-rc.d keeps the install from starting them (where none exists yet).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
for svc in tinyproxy danted; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		"${sudo[@]}" systemctl stop "$svc" || true
		"${sudo[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
	fi
done
