#!/usr/bin/env bash
# idp-bin.sh NAME: build the OpenID provider NAME (hydra, dex or dex-demo) from its
# module under e2e/idp/ and print the path of the binary; for NAME oidc-provider
# (Node.js), install e2e/idp/oidc-provider/package-lock.json with npm ci and print the
# directory that holds its node_modules (e2e/idptest runs e2e/idp/oidc-provider/provider.mjs
# with the machine's node against it). dex is cmd/dex, for the tests; dex-demo
# (e2e/idp/dexdemo) is the same Dex server with only what ./run.sh's demo uses, a much
# shorter cold build. For NAME helm or chartcheck, build helm or the chart's strict
# checker from the tool module deploy/helm/tools (deploy/helm/check.sh). For NAME
# staticcheck (tools/staticcheck), govulncheck or osvindex (tools/govulncheck, with
# scripts/vulncheck.sh; indexdb there too, vulndb's own database builder, for -compare),
# build the checks' tools.
#
# idp-bin.sh NAME fetch downloads the modules only (see below). The binary is cached
# outside the clone, in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/NAME-<sha256 of go.mod+go.sum>/NAME
# so a second run (or a second clone) reuses it, and a change to the pinned versions
# builds a new one (for chartcheck, whose code is in its tool module, its .go files are
# part of the key). A cold build takes minutes (hundreds of dependencies); progress goes
# to stderr, only the path goes to stdout:
#
#   export TOKENHANDLER_TEST_DEX="$(scripts/idp-bin.sh dex)"
#
# The npm install is cached the same way, keyed by package-lock.json alone:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tokenhandler/idp/oidc-provider-<sha256>/node_modules
# (about 10 s cold, 40 packages; nothing warm).
#
# Needs: go; for hydra also a C compiler (sqlite, for its in-memory store); for
# oidc-provider node and npm instead. Dex is built without cgo (its SQLite storage is
# never used: memory only), as in the Dockerfile.
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

mod="$root/e2e/idp/$name"
src=()
case "$name" in
hydra)
	pkg="github.com/ory/hydra/v2"
	# sqlite is needed for dsn: memory; CGO for go-sqlite3.
	export CGO_ENABLED=1
	tags=(-tags sqlite,sqlite_omit_load_extension)
	mod="$root/e2e/idp/hydra"
	;;
dex)
	pkg="github.com/dexidp/dex/cmd/dex"
	mod="$root/e2e/idp/dex"
	export CGO_ENABLED=0
	tags=()
	;;
dex-demo)
	pkg="tokenhandler.test/idp/dexdemo"
	mod="$root/e2e/idp/dexdemo"
	export CGO_ENABLED=0
	tags=()
	;;
oidc-provider)
	npm_dir "$name"
	exit 0
	;;
helm | chartcheck)
	mod="$root/deploy/helm/tools"
	pkg="helm.sh/helm/v4/cmd/helm"
	if [[ "$name" == chartcheck ]]; then
		pkg="./chartcheck"
		src=("$mod"/chartcheck/*.go)
	fi
	tags=()
	;;
staticcheck)
	mod="$root/tools/staticcheck"
	pkg="honnef.co/go/tools/cmd/staticcheck"
	tags=()
	;;
govulncheck | osvindex | indexdb)
	mod="$root/tools/govulncheck"
	case "$name" in
	govulncheck) pkg="golang.org/x/vuln/cmd/govulncheck" ;;
	indexdb) pkg="golang.org/x/vulndb/cmd/indexdb" ;;
	osvindex)
		pkg="./osvindex"
		src=("$mod"/osvindex/*.go)
		;;
	esac
	tags=()
	;;
*)
	echo "usage: $0 hydra|dex|dex-demo|oidc-provider|helm|chartcheck|staticcheck|govulncheck|osvindex|indexdb" >&2
	exit 2
	;;
esac

# The module's own Go files (dex-demo's main) and chartcheck's and osvindex's sources
# count too; hydra and dex have none.
mapfile -t srcs < <(find "$mod" -maxdepth 1 -name '*.go' | sort)
hash="$(cat "$mod/go.mod" "$mod/go.sum" "${srcs[@]}" "${src[@]}" | sha256sum | cut -c1-16)"
dir="$cache/$name-$hash"
bin="$dir/$name"

# idp-bin.sh NAME fetch: only download the modules the build needs (when the binary is
# not built yet) and print nothing; run.sh fetches Dex's while tokenhandler compiles.
if [[ "${2:-}" == fetch ]]; then
	if [[ ! -x "$bin" ]]; then
		(cd "$mod" && GOWORK=off go list -deps "${tags[@]}" "$pkg" >/dev/null) >&2
	fi
	exit 0
fi

if [[ ! -x "$bin" ]]; then
	mkdir -p "$dir"
	echo "idp-bin: building $name into $dir (a cold build takes several minutes)" >&2
	start=$SECONDS
	tmp="$(mktemp "$dir/.$name.XXXXXX")"
	# The tool module pins every version and go.sum is complete: a plain, read-only
	# build needs nothing from the module proxy but .mod and .zip files.
	# GOWORK=off: a go.work around the clone must not pull the tool module into it.
	# IDP_BIN_VERBOSE=1: go build -v, one line per package compiled (run.sh counts them).
	v=()
	if [[ "${IDP_BIN_VERBOSE:-}" == 1 ]]; then
		v=(-v)
	fi
	if ! (cd "$mod" && GOWORK=off go build -trimpath "${v[@]}" "${tags[@]}" -o "$tmp" "$pkg") >&2; then
		rm -f "$tmp"
		echo "idp-bin: building $name failed" >&2
		exit 1
	fi
	# Rename is atomic: a concurrent run sees either no binary or a whole one.
	mv -f "$tmp" "$bin"
	echo "idp-bin: built $name in $((SECONDS - start)) s" >&2
fi

echo "$bin"
