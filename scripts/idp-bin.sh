#!/usr/bin/env bash
# idp-bin.sh NAME: build the OpenID provider NAME (hydra or dex) from its tool module
# under e2e/idp/NAME and print the path of the binary; for NAME oidc-provider (Node.js),
# install e2e/idp/oidc-provider/package-lock.json with npm ci and print the directory
# that holds its node_modules (e2e/idptest runs e2e/idp/oidc-provider/provider.mjs
# with the machine's node against it).
#
# The binary is cached outside the clone, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/NAME-<sha256 of go.mod+go.sum>/NAME
# so a second run (or a second clone) reuses it, and a change to the pinned versions
# builds a new one. A cold build takes minutes (hundreds of dependencies); progress goes
# to stderr, only the path goes to stdout:
#
#   export TOKENHANDLER_TEST_DEX="$(scripts/idp-bin.sh dex)"
#
# The npm install is cached the same way, keyed by package-lock.json alone:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/oidc-provider-<sha256>/node_modules
# (about 10 s cold, 40 packages; nothing warm).
#
# Needs: go; for hydra also a C compiler (sqlite, for its in-memory store); for
# oidc-provider node and npm instead.
set -euo pipefail

name="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp"

# npm_dir NAME: npm ci the package-lock.json of e2e/idp/NAME into the cache (once per
# lock file) and print the directory.
npm_dir() {
	local src="$root/e2e/idp/$1" hash dir tmp start
	hash="$(sha256sum <"$src/package-lock.json" | cut -c1-16)"
	dir="$cache/$1-$hash"
	if [[ ! -f "$dir/.installed" ]]; then
		command -v npm >/dev/null 2>&1 || {
			echo "idp-bin: npm is not installed (apt-get install nodejs npm)" >&2
			exit 1
		}
		mkdir -p "$cache"
		echo "idp-bin: npm ci $1 into $dir" >&2
		start=$SECONDS
		tmp="$(mktemp -d "$cache/.$1.XXXXXX")"
		cp "$src/package.json" "$src/package-lock.json" "$tmp/"
		# --ignore-scripts: no install script of a dependency runs; none needs one.
		if ! (cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) >&2; then
			rm -rf "$tmp"
			echo "idp-bin: npm ci $1 failed" >&2
			exit 1
		fi
		touch "$tmp/.installed"
		# Rename is atomic: a concurrent run sees either no directory or a whole one; the
		# loser of a race drops its copy.
		mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
		echo "idp-bin: installed $1 in $((SECONDS - start)) s" >&2
	fi
	echo "$dir"
}

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
oidc-provider)
	npm_dir "$name"
	exit 0
	;;
*)
	echo "usage: $0 hydra|dex|oidc-provider" >&2
	exit 2
	;;
esac

mod="$root/e2e/idp/$name"
hash="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
dir="$cache/$name-$hash"
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
