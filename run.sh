#!/usr/bin/env bash
# run.sh: the README's run command. Starts the demo on loopback, without Docker:
# Dex (the OpenID provider), the example API and tokenhandler serving the example SPA,
# then prints the URL (http://localhost:8080) and the demo user's credentials.
# Ctrl-C stops everything. Needs only Go.
#
#   ./run.sh                    # tokenhandler on :8080, Dex on :5556
#   ./run.sh -ports=auto        # free ports instead
#   ./run.sh -token-ttl=20s     # shorter access tokens, to watch refreshes
#   ./run.sh -v                 # every component's log on stderr
#   ./run.sh -fapi              # FAPI 2.0 with DPoP: panva oidc-provider on :3000
#                               # instead of Dex (needs Node.js and npm as well)
#
# Flags go to examples/stack (go run ./examples/stack -h lists them).
#
# The first start builds tokenhandler and the stack while it downloads the demo's Dex
# (e2e/idp/dexdemo: Dex's server with only what the demo uses, no cgo), then builds Dex
# (cached outside the clone by scripts/idp-bin.sh); progress is printed every five
# seconds. Later starts reuse both and take seconds. With -fapi, Dex is not built:
# scripts/idp-bin.sh oidc-provider installs oidc-provider with npm ci instead (once,
# cached outside the clone), and node runs it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
# The Go that go.mod's toolchain line names (fetched through the module proxy when the
# installed one is older), so that the demo runs a patched standard library.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

if ! command -v go >/dev/null 2>&1; then
	echo "run.sh: Go is needed (https://go.dev/dl/, 1.26 or later)" >&2
	exit 1
fi

# The binaries go to a per-clone cache directory; go build's own cache makes a rebuild
# with no change take a second.
fapi=""
for arg in "$@"; do
	case "$arg" in
	-fapi | --fapi | -fapi=true | --fapi=true) fapi=1 ;;
	esac
done
if [[ -n "$fapi" ]] && ! command -v node >/dev/null 2>&1; then
	echo "run.sh: -fapi runs panva oidc-provider on Node.js, and node is not installed (Debian: apt-get install nodejs npm); ./run.sh without -fapi (Dex) needs only Go" >&2
	exit 1
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/run/$(printf '%s' "$root" | sha256sum | cut -c1-12)"
mkdir -p "$cache"
logs="$(mktemp -d "${TMPDIR:-/tmp}/tokenhandler-run.XXXXXX")"
trap 'rm -rf "$logs"' EXIT

# While tokenhandler and the stack compile, Dex's modules download; then Dex compiles,
# reusing the standard library packages just compiled (both without cgo, as the static
# binaries of the Docker image are). Two compilers at once would compile those twice.
# -fapi: tokenhandler and the stack, then oidc-provider's npm install (nothing of Dex).
if [[ -n "$fapi" ]]; then
	echo "run.sh: building tokenhandler and the demo stack (a minute or two the first time)" >&2
	if ! CGO_ENABLED=0 go build -trimpath -o "$cache/" ./cmd/tokenhandler ./examples/stack 2>"$logs/th.log"; then
		grep -v '^go: downloading' "$logs/th.log" | tail -30 >&2
		echo "run.sh: building tokenhandler failed" >&2
		exit 1
	fi
	if ! op="$(scripts/idp-bin.sh oidc-provider)"; then
		echo "run.sh: installing oidc-provider failed (it needs npm and the npm registry)" >&2
		exit 1
	fi
	rm -rf "$logs"
	trap - EXIT
	exec "$cache/stack" -root "$root" -oidc-provider "$op" -tokenhandler "$cache/tokenhandler" "$@"
fi

start=$SECONDS
scripts/idp-bin.sh dex-demo fetch 2>"$logs/dex.log" &
fetch_pid=$!
CGO_ENABLED=0 go build -v -trimpath -o "$cache/" ./cmd/tokenhandler ./examples/stack 2>"$logs/th.log" &
th_pid=$!
trap 'trap - INT; trap "" TERM; rm -rf "$logs"; kill -TERM 0 2>/dev/null; exit 130' INT TERM

# progress NAME LOG: one line about a build (go build -v prints each package it
# compiles, and "go: downloading" for each module it fetches).
progress() {
	local mods pkgs
	mods=$(grep -c '^go: downloading' "$2" || true)
	pkgs=$(grep -vc -e '^go: ' -e '^idp-bin: ' "$2" || true)
	printf '%s: %s modules downloaded, %s packages compiled' "$1" "$mods" "$pkgs"
}
announced=""
printed=-1
running() { # running PID...: any of them still runs
	local p
	for p in "$@"; do
		kill -0 "$p" 2>/dev/null && return 0
	done
	return 1
}
# show_progress PID...: a progress line every five seconds while any PID runs.
show_progress() {
	local elapsed
	while running "$@"; do
		sleep 0.2
		elapsed=$((SECONDS - start))
		if ((elapsed >= 3)) && [[ -z "$announced" ]]; then
			announced=1
			echo "run.sh: building tokenhandler, the demo stack and the demo's Dex (once; a minute or two on a fresh machine, later starts reuse them)" >&2
		fi
		if ((elapsed >= 5 && elapsed % 5 == 0 && elapsed != printed)); then
			printed=$elapsed
			echo "run.sh: ${elapsed} s: $(progress tokenhandler "$logs/th.log"); $(progress Dex "$logs/dex.log")" >&2
		fi
	done
}
failed() { # failed WHAT LOG
	grep -v '^go: downloading' "$2" | tail -30 >&2
	echo "run.sh: $1 failed" >&2
	exit 1
}

show_progress "$th_pid" "$fetch_pid"
wait "$th_pid" || failed "building tokenhandler" "$logs/th.log"
wait "$fetch_pid" || failed "downloading Dex's modules" "$logs/dex.log"
IDP_BIN_VERBOSE=1 scripts/idp-bin.sh dex-demo >"$logs/dex.path" 2>>"$logs/dex.log" &
dex_pid=$!
show_progress "$dex_pid"
wait "$dex_pid" || failed "building Dex" "$logs/dex.log"
if [[ -n "$announced" ]]; then
	echo "run.sh: built in $((SECONDS - start)) s" >&2
fi
dex="$(cat "$logs/dex.path")"
rm -rf "$logs"
trap - EXIT INT TERM

exec "$cache/stack" -root "$root" -dex "$dex" -tokenhandler "$cache/tokenhandler" "$@"
