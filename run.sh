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
#
# Flags go to examples/stack (go run ./examples/stack -h lists them).
#
# The first start builds the demo's Dex (e2e/idp/dexdemo: Dex's server with only what
# the demo uses, no cgo; cached outside the clone by scripts/idp-bin.sh) and, at the same
# time, tokenhandler and the stack; progress is printed every few seconds. Later starts
# reuse both and take seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

if ! command -v go >/dev/null 2>&1; then
	echo "run.sh: Go is needed (https://go.dev/dl/, 1.26 or later)" >&2
	exit 1
fi

# The binaries go to a per-clone cache directory; go build's own cache makes a rebuild
# with no change take a second.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/run/$(printf '%s' "$root" | sha256sum | cut -c1-12)"
mkdir -p "$cache"
logs="$(mktemp -d "${TMPDIR:-/tmp}/tokenhandler-run.XXXXXX")"
trap 'rm -rf "$logs"' EXIT

# Both builds at once: while one waits for the module proxy, the other compiles.
start=$SECONDS
IDP_BIN_VERBOSE=1 scripts/idp-bin.sh dex-demo >"$logs/dex.path" 2>"$logs/dex.log" &
dex_pid=$!
go build -v -trimpath -o "$cache/" ./cmd/tokenhandler ./examples/stack 2>"$logs/th.log" &
th_pid=$!
# Ctrl-C while building: the background builds ignore SIGINT (as every background job
# of a script does), so stop them, and everything else in this process group, with
# SIGTERM.
trap 'trap - INT; trap "" TERM; rm -rf "$logs"; kill -TERM 0 2>/dev/null; exit 130' INT TERM

# progress NAME LOG PID: one line about a build (go build -v prints each package it
# compiles, and "go: downloading" for each module it fetches).
progress() {
	local mods pkgs state
	mods=$(grep -c '^go: downloading' "$2" || true)
	pkgs=$(grep -vc -e '^go: ' -e '^idp-bin: ' "$2" || true)
	state="$mods modules downloaded, $pkgs packages compiled"
	if ! kill -0 "$3" 2>/dev/null; then
		state="done"
	fi
	printf '%s: %s' "$1" "$state"
}
announced=""
while kill -0 "$dex_pid" 2>/dev/null || kill -0 "$th_pid" 2>/dev/null; do
	sleep 1
	elapsed=$((SECONDS - start))
	if ((elapsed >= 3)) && [[ -z "$announced" ]]; then
		announced=1
		echo "run.sh: building Dex for the demo, tokenhandler and the demo stack (once; about 1-2 minutes on a fresh machine, later starts reuse them)" >&2
	fi
	if ((elapsed >= 3 && elapsed % 5 == 0)); then
		echo "run.sh: ${elapsed} s: $(progress Dex "$logs/dex.log" "$dex_pid"); $(progress tokenhandler "$logs/th.log" "$th_pid")" >&2
	fi
done
if ! wait "$dex_pid"; then
	grep -v '^go: downloading' "$logs/dex.log" | tail -30 >&2
	echo "run.sh: building Dex failed" >&2
	exit 1
fi
if ! wait "$th_pid"; then
	grep -v '^go: downloading' "$logs/th.log" | tail -30 >&2
	echo "run.sh: building tokenhandler failed" >&2
	exit 1
fi
if [[ -n "$announced" ]]; then
	echo "run.sh: built in $((SECONDS - start)) s" >&2
fi
dex="$(cat "$logs/dex.path")"
rm -rf "$logs"
trap - EXIT INT TERM

exec "$cache/stack" -root "$root" -dex "$dex" -tokenhandler "$cache/tokenhandler" "$@"
