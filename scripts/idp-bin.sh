#!/usr/bin/env bash
# idp-bin.sh NAME: build the OpenID provider NAME (hydra or dex) from its tool module
# under e2e/idp/NAME and print the path of the binary.
#
# The binary is cached outside the clone, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/NAME-<sha256 of go.mod+go.sum>/NAME
# so a second run (or a second clone) reuses it, and a change to the pinned versions
# builds a new one. A cold build takes minutes (hundreds of dependencies); progress goes
# to stderr, only the path goes to stdout:
#
#   export TOKENHANDLER_TEST_DEX="$(scripts/idp-bin.sh dex)"
#
# Needs: go; for hydra also a C compiler (sqlite, for its in-memory store).
set -euo pipefail

name="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$name" in
hydra)
	pkg="github.com/ory/hydra/v2"
	# sqlite is needed for dsn: memory; CGO for go-sqlite3.
	export CGO_ENABLED=1
	tags=(-tags sqlite,sqlite_omit_load_extension)
	;;
dex)
	pkg="github.com/dexidp/dex/cmd/dex"
	tags=()
	;;
*)
	echo "usage: $0 hydra|dex" >&2
	exit 2
	;;
esac

mod="$root/e2e/idp/$name"
hash="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/$name-$hash"
bin="$dir/$name"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	echo "idp-bin: building $name into $dir (a cold build takes several minutes)" >&2
	start=$SECONDS
	tmp="$(mktemp "$dir/.$name.XXXXXX")"
	# The tool module pins every version and go.sum is complete: a plain, read-only
	# build needs nothing from the module proxy but .mod and .zip files.
	# GOWORK=off: a go.work around the clone must not pull the tool module into it.
	if ! (cd "$mod" && GOWORK=off go build -trimpath "${tags[@]}" -o "$tmp" "$pkg") >&2; then
		rm -f "$tmp"
		echo "idp-bin: building $name failed" >&2
		exit 1
	fi
	# Rename is atomic: a concurrent run sees either no binary or a whole one.
	mv -f "$tmp" "$bin"
	echo "idp-bin: built $name in $((SECONDS - start)) s" >&2
fi

echo "$bin"
