#!/usr/bin/env bash
# time-first-start.sh DIR: time the README's run command (./run.sh) from start until the
# demo answers 200 at its URL, with every Go and tokenhandler cache kept in DIR.
#
# An empty (or new) DIR simulates a fresh machine that has only Go: empty module cache
# (GOMODCACHE), build cache (GOCACHE) and XDG_CACHE_HOME (where scripts/idp-bin.sh keeps
# Dex and run.sh keeps its binaries). Run it again with the same DIR for the warm start.
#
#   scripts/time-first-start.sh "$(mktemp -d)"         # cold
#   scripts/time-first-start.sh /tmp/that-same-dir     # warm
#
# Prints the load average before and after (the time depends on what else runs), the
# CPU time the start took (user+sys of run.sh and the builds it waited for: on a busy
# machine, CPU seconds / cores is the better estimate of a quiet machine's wall time) and
# "first start: N s". The demo is stopped (SIGINT, as Ctrl-C) once it has answered.
set -euo pipefail

dir="${1:?usage: $0 CACHE_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$dir/mod" "$dir/build" "$dir/xdg"
dir="$(cd "$dir" && pwd)"

export GOMODCACHE="$dir/mod" GOCACHE="$dir/build" XDG_CACHE_HOME="$dir/xdg"
# Nothing from the calling shell may short-cut the build.
unset TOKENHANDLER_DEX TOKENHANDLER_TEST_DEX TOKENHANDLER_BIN

out="$dir/run.out"
echo "time-first-start: load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s.%N)
# -json: one line with the URL on stdout once ready; progress stays on stderr.
"$root/run.sh" -ports=auto -json >"$out" &
pid=$!
stop() { kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop EXIT

url=""
while [[ -z "$url" ]]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "time-first-start: run.sh exited before the demo was up" >&2
		exit 1
	fi
	url="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$out" | head -1)"
	[[ -n "$url" ]] || sleep 0.1
done
until curl -fsS -o /dev/null "$url/"; do
	sleep 0.1
done
end=$(date +%s.%N)
# /proc/PID/stat fields 14-17: utime, stime, cutime, cstime in clock ticks. run.sh execs
# the stack in the same process, so the builds it waited for are in cutime and cstime;
# the running Dex and tokenhandler are not (not yet waited for).
ticks=$(getconf CLK_TCK)
cpu=$(awk -v t="$ticks" '{ printf "%.1f", ($14 + $15 + $16 + $17) / t }' "/proc/$pid/stat")
echo "time-first-start: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf 'first start: %.1f s wall, %s s CPU (%s answered 200)\n' "$(echo "$end - $start" | bc)" "$cpu" "$url"
