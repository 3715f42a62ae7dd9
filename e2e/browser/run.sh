#!/usr/bin/env bash
# e2e/browser/run.sh: the browser tests. Installs playwright-core from package-lock.json
# when node_modules is missing or stale (npm ci), provides the Dex binary when
# TOKENHANDLER_TEST_DEX is unset (scripts/idp-bin.sh dex), and runs the tests with node's
# test runner: spa.test.mjs (the example SPA) and client.test.mjs (the JavaScript client,
# clients/js). Extra arguments go to node --test.
#
# Needs node (20 or later), npm, Go and Debian's chromium (/usr/bin/chromium). Under
# CI=true a missing part fails the run; otherwise the tests skip with the reason.
# Screenshots of failures land in e2e/browser/artifacts/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

fail_or_skip() {
	if [[ "${CI:-}" == "true" ]]; then
		echo "e2e/browser: $* (CI=true: failing)" >&2
		exit 1
	fi
	echo "e2e/browser: skipped: $*" >&2
	exit 0
}

command -v node >/dev/null 2>&1 || fail_or_skip "node is not installed (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || fail_or_skip "npm is not installed (apt-get install npm)"

# npm ci when node_modules does not match the lock file.
stamp="node_modules/.package-lock.json"
if [[ ! -f "$stamp" ]] || ! cmp -s <(sed -n '/"node_modules\/playwright-core"/,/}/p' package-lock.json) \
	<(sed -n '/"node_modules\/playwright-core"/,/}/p' "$stamp"); then
	echo "e2e/browser: npm ci" >&2
	npm ci --no-audit --no-fund --loglevel=error
fi

if [[ -z "${TOKENHANDLER_TEST_DEX:-}" ]]; then
	echo "e2e/browser: TOKENHANDLER_TEST_DEX unset: scripts/idp-bin.sh dex (the first build takes about 5 minutes)" >&2
	TOKENHANDLER_TEST_DEX="$("$root/scripts/idp-bin.sh" dex)"
	export TOKENHANDLER_TEST_DEX
fi

# The test files run one after the other; each keeps its screenshots and logs here.
rm -rf "$here/artifacts"
exec node --test --test-concurrency=1 "$@" spa.test.mjs client.test.mjs
