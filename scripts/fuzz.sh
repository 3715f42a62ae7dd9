#!/usr/bin/env bash
# fuzz.sh: run every fuzz target of the module (each `func FuzzXxx(f *testing.F)` in a
# _test.go file of a package under ./...), one at a time, for a time budget.
#
#   scripts/fuzz.sh                    every target
#   scripts/fuzz.sh ./proxy/...        the targets of these packages only
#   scripts/fuzz.sh -budget 600        600 s of fuzzing in all, split evenly
#   scripts/fuzz.sh -list              print "package target" lines and stop
#
# Budget: -budget SECONDS, else TOKENHANDLER_FUZZ_BUDGET, else 300 under CI=true and 40
# otherwise. It is the wall time of the whole run, builds of the instrumented test
# binaries included: each target fuzzes for an equal share of what is left when it
# starts (at least 2 s, so a tiny budget still runs every target). Workers per target:
# TOKENHANDLER_FUZZ_PARALLEL (default 2, the cores a CI machine has).
#
# Each package's seed corpus lives in testdata/fuzz/FuzzXxx/ next to its tests, together
# with the f.Add seeds. When a target fails, go test writes the failing input there; this
# script keeps fuzzing the other targets, then prints every failing input and exits 1.
# Commit the input with the fix: from then on it is a seed that plain `go test` runs too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

budget="${TOKENHANDLER_FUZZ_BUDGET:-}"
list=false
pkgs=()
while (($# > 0)); do
	case "$1" in
	-budget)
		budget="${2:?-budget needs a number of seconds}"
		shift 2
		;;
	-list)
		list=true
		shift
		;;
	-h | -help | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		pkgs+=("$1")
		shift
		;;
	esac
done
if [[ -z "$budget" ]]; then
	if [[ "${CI:-}" == true ]]; then budget=300; else budget=40; fi
fi
[[ "$budget" =~ ^[0-9]+$ ]] || {
	echo "fuzz.sh: the budget must be whole seconds, not $budget" >&2
	exit 2
}
parallel="${TOKENHANDLER_FUZZ_PARALLEL:-2}"
((${#pkgs[@]} > 0)) || pkgs=(./...)

# Every target: "import/path Dir FuzzName". go list keeps out nested modules (tools/,
# e2e/idp/) and testdata.
module="$(go list -m)"
targets=()
while read -r importpath dir; do
	for f in "$dir"/*_test.go; do
		[[ -e "$f" ]] || continue
		while read -r name; do
			targets+=("$importpath $dir $name")
		done < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\).*/\1/p' "$f")
	done
done < <(go list -f '{{.ImportPath}} {{.Dir}}' "${pkgs[@]}")

if ((${#targets[@]} == 0)); then
	echo "fuzz.sh: no fuzz targets in ${pkgs[*]}" >&2
	exit 1
fi
if $list; then
	printf '%s\n' "${targets[@]}" | cut -d' ' -f1,3
	exit 0
fi

echo "fuzz.sh: ${#targets[@]} targets in ${budget}s, $parallel workers each" >&2

failed=()
flaked=()
start=$SECONDS
left=${#targets[@]}
for t in "${targets[@]}"; do
	read -r importpath dir name <<<"$t"
	# An equal share of the time left; building the package's test binary comes out of it.
	per=$(((budget - (SECONDS - start)) / left))
	((per >= 2)) || per=2
	left=$((left - 1))
	rel=".${importpath#"$module"}"
	printf '\n--> %s %s (%ss)\n' "$rel" "$name" "$per" >&2
	before="$(ls "$dir/testdata/fuzz/$name" 2>/dev/null || true)"
	t0=$SECONDS
	# Minimizing each new interesting input may take go test's default 60 s, with no
	# fuzzing meanwhile: a fifth of the share is enough (a failing input is kept anyway).
	minimize=$((per / 5))
	((minimize >= 1)) || minimize=1
	out="$(mktemp)"
	if go test -run='^$' -fuzz="^${name}\$" -fuzztime="${per}s" -fuzzminimizetime="${minimize}s" \
		-parallel="$parallel" "$rel" 2>&1 | tee "$out" >&2; then
		rm -f "$out"
		echo "    ok in $((SECONDS - t0)) s" >&2
		continue
	fi
	# Go before 1.27 can end a -fuzztime run with a bare "context deadline exceeded"
	# when a worker is still busy as the time runs out (golang/go#75804, a race in the
	# fuzzing coordinator; likelier on a loaded machine). That is no finding: a finding
	# writes its input. Such a run counts as passed once the target's whole corpus,
	# replayed deterministically, passes too; anything else is a failure.
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out" &&
		go test -run="^${name}\$" "$rel" >/dev/null 2>&1; then
		rm -f "$out"
		flaked+=("$rel $name")
		echo "    ok in $((SECONDS - t0)) s (the run ended with golang/go#75804's spurious deadline error; no input was written and the corpus replays clean)" >&2
		continue
	fi
	rm -f "$out"
	failed+=("$rel $name")
	echo "fuzz.sh: FAILED: $rel $name" >&2
	# The input go test kept: print it, so a CI log is enough to reproduce.
	for f in "$dir/testdata/fuzz/$name"/*; do
		[[ -e "$f" ]] || continue
		if ! grep -qxF "$(basename "$f")" <<<"$before"; then
			echo "fuzz.sh: failing input ${f#"$PWD/"}:" >&2
			sed 's/^/    /' "$f" >&2
		fi
	done
done

echo >&2
if ((${#failed[@]} > 0)); then
	echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} fuzz targets FAILED (after $((SECONDS - start)) s):" >&2
	printf '    %s\n' "${failed[@]}" >&2
	echo "fuzz.sh: reproduce with go test -run=FuzzName/INPUT ./pkg; fix, and commit the input under testdata/fuzz" >&2
	exit 1
fi
echo "fuzz.sh: all ${#targets[@]} fuzz targets passed in $((SECONDS - start)) s" >&2
if ((${#flaked[@]} > 0)); then
	echo "fuzz.sh: of which ${#flaked[@]} ended with golang/go#75804's spurious deadline error (nothing found):" >&2
	printf '    %s\n' "${flaked[@]}" >&2
fi
