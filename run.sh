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
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

if ! command -v go >/dev/null 2>&1; then
	echo "run.sh: Go is needed (https://go.dev/dl/, 1.26 or later)" >&2
	exit 1
fi

echo "run.sh: getting Dex (built once from e2e/idp/dex; the first build takes about 5 minutes on 2 cores, later starts reuse it)"
dex="$(scripts/idp-bin.sh dex)"

# The binaries go to a per-clone cache directory; go build's own cache makes a rebuild
# with no change take a second.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/run/$(printf '%s' "$root" | sha256sum | cut -c1-12)"
mkdir -p "$cache"
echo "run.sh: building tokenhandler and the demo stack"
go build -trimpath -o "$cache/tokenhandler" ./cmd/tokenhandler
go build -trimpath -o "$cache/stack" ./examples/stack

exec "$cache/stack" -root "$root" -dex "$dex" -tokenhandler "$cache/tokenhandler" "$@"
