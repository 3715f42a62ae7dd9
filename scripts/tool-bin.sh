#!/usr/bin/env bash
# tool-bin.sh NAME: build the pinned Go tool NAME from its tool module and print the path
# of the binary. Every tool is a small Go module outside the product's go.mod that pins
# the tool and all its dependencies:
#
#   hydra, dex             OpenID providers for the tests    e2e/idp/NAME
#   staticcheck            the linter                        tools/staticcheck
#   govulncheck, osvindex, vulnerability check, and the      tools/govulncheck
#   indexdb                commands that build its database
#                          from golang.org/x/vulndb
#
# The binary is cached outside the clone, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/KIND/MODULE-<sha256 of go.mod+go.sum>/NAME
# (KIND is idp for the providers, tools for the rest), so a second run (or a second
# clone) reuses it, and a change to the pinned versions builds a new one. A cold build
# takes from seconds to minutes; progress goes to stderr, only the path goes to stdout:
#
#   export TOKENHANDLER_TEST_DEX="$(scripts/tool-bin.sh dex)"
#
# Needs: go; for hydra also a C compiler (sqlite, for its in-memory store).
set -euo pipefail

name="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tags=()
case "$name" in
hydra)
	kind=idp mod=e2e/idp/hydra pkg="github.com/ory/hydra/v2"
	# sqlite is needed for dsn: memory; CGO for go-sqlite3.
	export CGO_ENABLED=1
	tags=(-tags sqlite,sqlite_omit_load_extension)
	;;
dex) kind=idp mod=e2e/idp/dex pkg="github.com/dexidp/dex/cmd/dex" ;;
staticcheck) kind=tools mod=tools/staticcheck pkg="honnef.co/go/tools/cmd/staticcheck" ;;
govulncheck) kind=tools mod=tools/govulncheck pkg="golang.org/x/vuln/cmd/govulncheck" ;;
osvindex) kind=tools mod=tools/govulncheck pkg="tokenhandler.test/tools/govulncheck/osvindex" ;;
indexdb) kind=tools mod=tools/govulncheck pkg="golang.org/x/vulndb/cmd/indexdb" ;;
*)
	echo "usage: $0 hydra|dex|staticcheck|govulncheck|osvindex|indexdb" >&2
	exit 2
	;;
esac

mod="$root/$mod"
hash="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/$kind/$(basename "$mod")-$hash"
bin="$dir/$name"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	echo "tool-bin: building $name into $dir" >&2
	start=$SECONDS
	tmp="$(mktemp "$dir/.$name.XXXXXX")"
	# The tool module pins every version and go.sum is complete: a plain, read-only
	# build needs nothing from the module proxy but .mod and .zip files.
	# GOWORK=off: a go.work around the clone must not pull the tool module into it.
	if ! (cd "$mod" && GOWORK=off go build -trimpath "${tags[@]}" -o "$tmp" "$pkg") >&2; then
		rm -f "$tmp"
		echo "tool-bin: building $name failed" >&2
		exit 1
	fi
	# Rename is atomic: a concurrent run sees either no binary or a whole one.
	mv -f "$tmp" "$bin"
	echo "tool-bin: built $name in $((SECONDS - start)) s" >&2
fi

echo "$bin"
