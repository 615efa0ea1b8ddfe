#!/usr/bin/env bash
# Installs the proxies the benchmark measures beside hopper when they are
# missing: tinyproxy and dante-server from Debian's packages, and glider
# (not packaged by Debian) built from its Go module into /usr/local/bin. Run
# as root or with sudo available; `make bench-peers` and .ci/deps call it.
set -euo pipefail

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi

missing=()
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || missing+=(tinyproxy)
command -v danted >/dev/null 2>&1 || [ -x /usr/sbin/danted ] || missing+=(dante-server)
if [ ${#missing[@]} -eq 0 ]; then
	echo "bench peers: tinyproxy and dante-server already installed"
else
	echo "bench peers: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	# The packages' own services are not wanted: the harness starts each peer
	# itself on a loopback port with a generated config. A temporary
	# policy-rc.d keeps the install from starting them (where none exists yet).
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		made_policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$made_policy" >/dev/null
		"${sudo[@]}" chmod 755 "$made_policy"
		trap '"${sudo[@]}" rm -f "$made_policy"' EXIT
	fi
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
	for svc in tinyproxy danted; do
		if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
			"${sudo[@]}" systemctl stop "$svc" || true
			"${sudo[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
		fi
	done
fi

# glider: `go install` cannot resolve it (the proxy refuses its version
# list), so the pinned module is downloaded and built from a writable copy.
# -mod=mod lets the toolchain amend the copy's go.mod and go.sum as it needs.
glider_version=0.16.4
glider_bin=/usr/local/bin/glider
if [ -x "$glider_bin" ] && "$glider_bin" -h 2>&1 | grep -q "glider $glider_version,"; then
	echo "bench peers: glider $glider_version already installed"
	exit 0
fi
go=${GO:-go}
echo "bench peers: building glider $glider_version"
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -z "${made_policy:-}" ] || "${sudo[@]}" rm -f "$made_policy"' EXIT
fail() {
	echo "bench peers: $*" >&2
	exit 1
}
# Outside any module, so the project's go.mod is left alone.
json=$(cd "$work" && GOFLAGS= "$go" mod download -json "github.com/nadoo/glider@v$glider_version") ||
	fail "go mod download github.com/nadoo/glider@v$glider_version failed: $json"
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -f "$dir/go.mod" ] || fail "go mod download gave no source for glider: $json"
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
(cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 "$go" build -trimpath -o "$work/glider" .) ||
	fail "building glider $glider_version failed"
"${sudo[@]}" install -m 755 "$work/glider" "$glider_bin"
"$glider_bin" -h 2>&1 | grep -q "glider $glider_version," || fail "$glider_bin does not report version $glider_version"
echo "bench peers: installed $glider_bin"
