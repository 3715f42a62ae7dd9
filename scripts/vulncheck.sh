#!/usr/bin/env bash
# vulncheck.sh [PACKAGES]: govulncheck over the product module (./... by default), against
# a vulnerability database built here from the pinned golang.org/x/vulndb module. It
# fails (govulncheck exits 3) when the code calls a function with a known
# vulnerability, in a dependency or in the standard library; vulnerabilities in code the
# module never reaches are counted but do not fail it.
#
#   scripts/vulncheck.sh -compare   also build the database with vulndb's own cmd/indexdb
#                                   and check that the index files are the same (run it
#                                   after moving the vulndb pin; indexdb takes minutes
#                                   to build)
#
# Nothing is fetched from vuln.go.dev: tools/govulncheck/go.mod pins golang.org/x/vuln
# (govulncheck) and golang.org/x/vulndb, whose data/osv holds the OSV entries;
# tools/govulncheck/osvindex writes them in the layout govulncheck reads with
# -db file:///DIR. Binaries and database are cached outside the clone, keyed by the tool
# module's go.mod and go.sum (scripts/idp-bin.sh), so only the first run builds them.
#
# The standard library is checked at the Go version go.mod's toolchain line names (the
# patched Go the project builds with) when the go on PATH is older: the scan then uses
# that toolchain (the go command fetches it through the module proxy) and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

compare=false
if [[ "${1:-}" == -compare ]]; then
	compare=true
	shift
fi

govulncheck="$(scripts/idp-bin.sh govulncheck)"
osvindex="$(scripts/idp-bin.sh osvindex)"
db="$(dirname "$osvindex")/vulndb"

vulndb_dir() {
	# The module's zip comes through the Go module proxy and is checked against go.sum.
	(cd tools/govulncheck && GOWORK=off go mod download golang.org/x/vulndb >&2 &&
		GOWORK=off go list -m -f '{{.Dir}} {{.Version}}' golang.org/x/vulndb)
}

if [[ ! -f "$db/index/modules.json" ]]; then
	start=$SECONDS
	read -r src version < <(vulndb_dir)
	tmp="$(mktemp -d "$(dirname "$db")/.vulndb.XXXXXX")"
	if ! "$osvindex" -vulns "$src/data/osv" -out "$tmp" >&2; then
		rm -rf "$tmp"
		echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$version failed" >&2
		exit 1
	fi
	# A concurrent run may have won the race: keep its copy.
	mv -T "$tmp" "$db" 2>/dev/null || rm -rf "$tmp"
	echo "vulncheck: built the database of golang.org/x/vulndb@$version in $((SECONDS - start)) s" >&2
fi

if $compare; then
	indexdb="$(scripts/idp-bin.sh indexdb)"
	read -r src version < <(vulndb_dir)
	ref="$(mktemp -d "${TMPDIR:-/tmp}/vulndb-indexdb.XXXXXX")"
	trap 'rm -rf "$ref"' EXIT
	"$indexdb" -vulns "$src/data/osv" -out "$ref" >&2
	for f in db modules vulns; do
		if ! cmp -s "$ref/index/$f.json" "$db/index/$f.json"; then
			echo "vulncheck: index/$f.json differs from vulndb's cmd/indexdb at golang.org/x/vulndb@$version" >&2
			exit 1
		fi
	done
	echo "vulncheck: the index files are those of vulndb's cmd/indexdb" >&2
fi

toolchain="$(sed -n 's/^toolchain[[:space:]]\{1,\}\(go[0-9.]*\).*/\1/p' go.mod)"
local_go="$(go env GOVERSION)"
newest="$(printf '%s\n' "${toolchain#go}" "${local_go#go}" | sort -V | tail -n1)"
if [[ -n "$toolchain" && "$newest" != "${local_go#go}" ]]; then
	echo "vulncheck: checking the standard library of $toolchain (go.mod's toolchain line), not of $local_go on PATH: build with GOTOOLCHAIN=auto (or $toolchain) to get its fixes" >&2
	export GOTOOLCHAIN="$toolchain"
fi

if (($# == 0)); then
	set -- ./...
fi
# -db file://: the default database host is not reachable from here and is never asked.
exec "$govulncheck" -db "file://$db" "$@"
