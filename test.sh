#!/usr/bin/env bash
# test.sh: the project's one test command. CI runs exactly this (see .ci/run).
#
#   ./test.sh                          go vet ./..., staticcheck, govulncheck, go test -race
#                                      ./..., the fuzz targets for a time budget, the Docker
#                                      build check, the Helm chart check, the JavaScript
#                                      client's unit tests, the browser tests, then the short
#                                      abuse drill and a 60 s soak (RELIABILITY.md)
#   ./test.sh ./session/...            vet and test only these packages (no browser tests)
#   ./test.sh -run TestLogin ./e2e/... any go test flags, with or without packages
#   ./test.sh -count=1 -v              flags only: every package, browser tests included
#
# Arguments: those naming packages (".", "./..." or "../..." paths, or import paths
# under github.com/tokenhandler/tokenhandler) select what go vet and go test run on,
# ./... when there is none; every argument, in order, goes to go test after the
# defaults (-race -timeout 30m), so a later -timeout or -race=false wins. Give packages
# as relative paths: a flag value such as "-run TestA/sub" is not mistaken for one.
#
# Before the tests it provides what the integration tests need, as environment
# variables (test-only variables never use the TH_ prefix):
#   TOKENHANDLER_TEST_HYDRA, TOKENHANDLER_TEST_DEX
#       provider binaries, built once by scripts/idp-bin.sh and cached outside the
#       clone (a cold build takes minutes, later runs reuse the binary);
#   TOKENHANDLER_TEST_OIDC_PROVIDER
#       the directory holding node_modules/oidc-provider (panva oidc-provider, npm ci of
#       e2e/idp/oidc-provider/package-lock.json by scripts/idp-bin.sh, cached the same
#       way; about 10 s cold); the tests run it with the machine's node;
#   TOKENHANDLER_DEX
#       the demo's Dex (scripts/idp-bin.sh dex-demo, what ./run.sh starts), for
#       examples/stack's test;
#   TOKENHANDLER_TEST_REDIS_URL
#       a redis-server started here on a free loopback port and stopped on exit,
#       unless the variable is already set or redis-server is not installed;
#   TOKENHANDLER_TEST_REDIS_BIN
#       the redis-server binary, for tests that start and stop their own.
# Any of them already set in the environment is used as it is. Without one, the tests
# that need it are skipped, except under CI=true, where they fail.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Build and test with the Go that go.mod's toolchain line names (a patched Go 1.26), which
# the go command fetches through the module proxy when the installed one is older: the
# binaries CI proves are the binaries people run. GOTOOLCHAIN set by the caller wins.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

step() { printf '\n==> %s\n' "$*" >&2; }

# --- Arguments --------------------------------------------------------------------
pkgs=()
for arg in "$@"; do
	case "$arg" in
	. | ./* | ../* | github.com/tokenhandler/tokenhandler | github.com/tokenhandler/tokenhandler/*)
		pkgs+=("$arg")
		;;
	esac
done
targets=("${pkgs[@]}")
if ((${#pkgs[@]} == 0)); then
	targets=(./...)
fi

# --- OpenID providers ---------------------------------------------------------------
step "OpenID provider binaries (scripts/idp-bin.sh)"
TOKENHANDLER_TEST_HYDRA="${TOKENHANDLER_TEST_HYDRA:-$(scripts/idp-bin.sh hydra)}"
TOKENHANDLER_TEST_DEX="${TOKENHANDLER_TEST_DEX:-$(scripts/idp-bin.sh dex)}"
# The demo's Dex (./run.sh); it shares every compiled package with the one above.
TOKENHANDLER_DEX="${TOKENHANDLER_DEX:-$(scripts/idp-bin.sh dex-demo)}"
export TOKENHANDLER_TEST_HYDRA TOKENHANDLER_TEST_DEX TOKENHANDLER_DEX
echo "TOKENHANDLER_TEST_HYDRA=$TOKENHANDLER_TEST_HYDRA" >&2
echo "TOKENHANDLER_TEST_DEX=$TOKENHANDLER_TEST_DEX" >&2
# Without npm (or the registry) the oidc-provider tests skip, except under CI=true.
if [[ -z "${TOKENHANDLER_TEST_OIDC_PROVIDER:-}" ]]; then
	if ! TOKENHANDLER_TEST_OIDC_PROVIDER="$(scripts/idp-bin.sh oidc-provider)"; then
		if [[ "${CI:-}" == "true" ]]; then
			echo "test.sh: scripts/idp-bin.sh oidc-provider failed (CI=true: failing)" >&2
			exit 1
		fi
		TOKENHANDLER_TEST_OIDC_PROVIDER=""
		echo "test.sh: no oidc-provider: its tests will be skipped" >&2
	fi
fi
export TOKENHANDLER_TEST_OIDC_PROVIDER
echo "TOKENHANDLER_TEST_OIDC_PROVIDER=$TOKENHANDLER_TEST_OIDC_PROVIDER" >&2
echo "TOKENHANDLER_DEX=$TOKENHANDLER_DEX" >&2

# --- Redis ------------------------------------------------------------------------------
redis_pid=""
redis_dir=""
cleanup() {
	if [[ -n "$redis_pid" ]]; then
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	if [[ -n "$redis_dir" ]]; then
		rm -rf "$redis_dir"
	fi
}
trap cleanup EXIT

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_redis: start redis-server on a free loopback port; retried, because another
# process can take the port between the check and the bind.
start_redis() {
	local attempt port
	redis_dir="$(mktemp -d "${TMPDIR:-/tmp}/tokenhandler-redis.XXXXXX")"
	for attempt in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$redis_dir" >"$redis_dir/redis.log" 2>&1 &
		redis_pid=$!
		for _ in $(seq 100); do
			if ! kill -0 "$redis_pid" 2>/dev/null; then
				break # exited: most likely the port was taken
			fi
			if ! port_free "$port" && { ! command -v redis-cli >/dev/null ||
				[[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; }; then
				export TOKENHANDLER_TEST_REDIS_URL="redis://127.0.0.1:$port"
				echo "TOKENHANDLER_TEST_REDIS_URL=$TOKENHANDLER_TEST_REDIS_URL (pid $redis_pid)" >&2
				return 0
			fi
			sleep 0.05
		done
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
		redis_pid=""
	done
	echo "test.sh: could not start redis-server; its output:" >&2
	cat "$redis_dir/redis.log" >&2 || true
	return 1
}

step "Redis"
if command -v redis-server >/dev/null; then
	TOKENHANDLER_TEST_REDIS_BIN="$(command -v redis-server)"
	export TOKENHANDLER_TEST_REDIS_BIN
fi
if [[ -n "${TOKENHANDLER_TEST_REDIS_URL:-}" ]]; then
	echo "TOKENHANDLER_TEST_REDIS_URL=$TOKENHANDLER_TEST_REDIS_URL (given)" >&2
elif [[ -n "${TOKENHANDLER_TEST_REDIS_BIN:-}" ]]; then
	start_redis
else
	echo "redis-server not installed: the Redis tests will be skipped (fail under CI=true)" >&2
fi

# --- Go -----------------------------------------------------------------------------------
step "go vet ${targets[*]}"
go vet "${targets[@]}"
if ((${#pkgs[@]} == 0)); then
	step "go mod tidy -diff (go.mod and go.sum say exactly what the code uses)"
	go mod tidy -diff
	step "staticcheck ./... (tools/staticcheck, pinned)"
	staticcheck="$(scripts/idp-bin.sh staticcheck)"
	"$staticcheck" ./...
	step "govulncheck ./... (scripts/vulncheck.sh: pinned golang.org/x/vulndb, local database)"
	scripts/vulncheck.sh
fi

test_cmd=(go test -race -timeout 30m "$@")
if ((${#pkgs[@]} == 0)); then
	test_cmd+=(./...)
fi
step "${test_cmd[*]}"
"${test_cmd[@]}"

# On a full run only: every fuzz target for a share of TOKENHANDLER_FUZZ_BUDGET seconds
# (300 in all under CI=true, 40 otherwise; scripts/fuzz.sh).
if ((${#pkgs[@]} == 0)); then
	step "fuzz targets (scripts/fuzz.sh)"
	scripts/fuzz.sh
fi

# --- Docker build, Helm chart, JavaScript client, browser tests, abuse drill and soak --------
# On a full run only (no package named): the Dockerfile's build commands run outside
# Docker (static binaries, docker-compose.yml valid), the Helm chart (rendered by the real
# helm and decoded strictly against the Kubernetes API types), the JavaScript client's
# unit tests (node --test, stubs only, no npm packages), then the example SPA in Chromium
# against the real Dex (e2e/browser/run.sh: node's test runner driving Debian's chromium
# with playwright-core), then the abuse drill's short mode (about 30 s) and a 60 s soak.
if ((${#pkgs[@]} == 0)); then
	step "Docker build outside Docker (examples/check-docker-build.sh)"
	examples/check-docker-build.sh
	step "Helm chart: lint, render, strict decode (deploy/helm/check.sh)"
	deploy/helm/check.sh
	step "JavaScript client unit tests (node --test in clients/js)"
	if command -v node >/dev/null 2>&1; then
		(cd clients/js && node --test)
	elif [[ "${CI:-}" == "true" ]]; then
		echo "test.sh: node is not installed (CI=true: failing)" >&2
		exit 1
	else
		echo "test.sh: skipped the JavaScript client's unit tests: node is not installed" >&2
	fi
	step "browser tests (e2e/browser/run.sh)"
	e2e/browser/run.sh
	# RELIABILITY.md: both exit 1 on a missed target, and on a missing part (a provider,
	# redis-server), CI or not: they are commands, not tests that could skip.
	step "abuse drill, short (go run ./bench/abuse -short)"
	go run ./bench/abuse -short
	# One browser of 100 tabs: browsers of the one demo user refreshing at the same moment
	# make Hydra's in-memory store answer 500 now and then (RELIABILITY.md), which would
	# fail CI at random; the tabs, the replicas and strict rotation are all still there.
	step "soak, 60 s (go run ./bench/soak -duration 60s -browsers 1 -tabs 100)"
	go run ./bench/soak -duration 60s -browsers 1 -tabs 100
fi

step "all tests passed"
