#!/usr/bin/env bash
# check.sh: CI's check of the Helm chart (deploy/helm/tokenhandler), with the real helm.
#
#   1. builds helm and chartcheck from the tool module deploy/helm/tools (pinned in its
#      go.mod; cached outside the clone by scripts/idp-bin.sh) and tokenhandler itself;
#      gofmt and go vet on chartcheck;
#   2. helm lint --strict with the default values and with every ci/*-values.yaml;
#   3. renders the chart for each of them (helm template) and runs chartcheck on the
#      output: every object decoded strictly against the Kubernetes API types (the
#      ServiceMonitor against the Prometheus Operator's), plus the chart's promises
#      (security context, probes, drain, secrets only from Secrets, Redis for
#      replicas > 1), and `tokenhandler check-config` on the rendered configuration;
#   4. proves the refusals: each values mistake below must fail to render with the
#      chart's message, and chartcheck must reject manifests that break a promise.
#
# Outside CI a tool that cannot be built skips the check with the reason; under CI=true
# it fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
chart=deploy/helm/tokenhandler
kube_version=1.30.0 # the chart's minimum (kubeVersion in Chart.yaml)

fail() {
	echo "helm check: FAIL: $*" >&2
	exit 1
}
step() { echo "helm check: $*" >&2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenhandler-helm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# helm keeps no state of ours: no repositories, no plugins, nothing in $HOME.
export HELM_CACHE_HOME="$tmp/helm/cache" HELM_CONFIG_HOME="$tmp/helm/config" HELM_DATA_HOME="$tmp/helm/data"

# --- 1. Tools ----------------------------------------------------------------------------
start=$SECONDS
tools_ok=true
helm="$(scripts/idp-bin.sh helm)" || tools_ok=false
chartcheck="$(scripts/idp-bin.sh chartcheck)" || tools_ok=false
if ! $tools_ok; then
	[[ "${CI:-}" == "true" ]] && fail "could not build helm or chartcheck (deploy/helm/tools)"
	echo "helm check: SKIPPED: could not build helm or chartcheck (deploy/helm/tools); under CI=true this fails" >&2
	exit 0
fi
# chartcheck is Go outside the product's module, so test.sh's go vet does not see it.
unformatted="$(gofmt -l deploy/helm/tools)"
[[ -z "$unformatted" ]] || fail "gofmt: $unformatted"
(cd deploy/helm/tools && GOWORK=off go vet -trimpath ./...) || fail "go vet deploy/helm/tools"
# The flags of examples/check-docker-build.sh, which test.sh runs just before: its
# compiled packages are reused.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/tokenhandler" ./cmd/tokenhandler
step "helm $("$helm" version --template '{{.Version}}'), chartcheck, tokenhandler ready in $((SECONDS - start)) s"

# --- 2 and 3. Lint, render, check -----------------------------------------------------------
# design_only LOG: succeeds, printing the keys, when the only problems check-config
# reported in chartcheck's LOG are unknown keys that DESIGN.md defines.
design_only() {
	local problems
	problems="$(sed -n '/check-config refuses/,/^--- tokenhandler.yaml/p' "$1" |
		sed -e '1d' -e '$d' -e 's/^tokenhandler: config: [^:]*: //' | grep -v '^$')" || return 1
	grep -Evq '^line [0-9]+: unknown key (oidc\.(client_key_file|par|dpop|profile)|dpop|token_signing|routes\[[0-9]+\]\.token)$' <<<"$problems" &&
		return 1
	sed 's/.*unknown key //' <<<"$problems" | tr '\n' ' '
}

# scenario NAME REQUIRED-KINDS [helm flags...]
scenario() {
	local name="$1" kinds="$2" out="$tmp/$1.yaml"
	shift 2
	"$helm" lint --strict --kube-version "$kube_version" "$chart" "$@" >"$tmp/lint.log" 2>&1 ||
		fail "$name: helm lint --strict:
$(cat "$tmp/lint.log")"
	"$helm" template th "$chart" --namespace apps --kube-version "$kube_version" "$@" >"$out" 2>"$tmp/err.log" ||
		fail "$name: helm template: $(cat "$tmp/err.log")"
	local check=(-require "$kinds")
	if [[ "$name" != default ]]; then
		check+=(-check-config "$tmp/tokenhandler")
	fi
	if ! "$chartcheck" "${check[@]}" <"$out" >"$tmp/check.log" 2>&1; then
		# design-values.yaml may fail check-config only on the design's keys that
		# config.go does not have yet (chartcheck runs check-config last, when every
		# other check passed).
		local unknown
		if [[ "$name" == design ]] && unknown="$(design_only "$tmp/check.log")"; then
			step "design: every check passes but check-config, which does not know these keys yet: $unknown"
			return
		fi
		fail "$name: chartcheck:
$(cat "$tmp/check.log")"
	fi
	step "$name: $(cat "$tmp/check.log")"
}

base=Deployment,Service,ConfigMap,ServiceAccount,PodDisruptionBudget
scenario default "$base"
scenario ha "$base,ServiceMonitor" -f "$chart/ci/ha-values.yaml"
scenario hpa "$base,HorizontalPodAutoscaler,ServiceMonitor" -f "$chart/ci/hpa-values.yaml"
scenario full "$base" -f "$chart/ci/full-values.yaml"
scenario tls "$base" -f "$chart/ci/tls-values.yaml"
scenario design "$base" -f "$chart/ci/design-values.yaml"
# The longest names: a 63-character release name, and the metrics Service's suffix.
scenario long-name "$base,ServiceMonitor" -f "$chart/ci/ha-values.yaml" \
	--set fullnameOverride=tokenhandler-with-a-release-name-as-long-as-kubernetes-allows-x

# A configuration change rolls the pods: the checksum annotation follows the ConfigMap.
sum() { grep -o 'checksum/config: [0-9a-f]*' "$1" | cut -d' ' -f2; }
"$helm" template th "$chart" --kube-version "$kube_version" --set config.log.level=debug >"$tmp/changed.yaml"
[[ -n "$(sum "$tmp/default.yaml")" && "$(sum "$tmp/default.yaml")" != "$(sum "$tmp/changed.yaml")" ]] ||
	fail "a config change does not change the checksum/config annotation"
step "a config change changes checksum/config"

# --- 4. Refusals -----------------------------------------------------------------------------
# refused MESSAGE [helm flags...]: rendering must fail and say MESSAGE.
refused() {
	local want="$1"
	shift
	if "$helm" template th "$chart" --kube-version "$kube_version" "$@" >/dev/null 2>"$tmp/err.log"; then
		fail "rendered, but must be refused ($want): $*"
	fi
	grep -qF -- "$want" "$tmp/err.log" || fail "refused without saying \"$want\": $*: $(cat "$tmp/err.log")"
	step "refused as it must be: $* -> $want"
}
refused "replicas: 3 needs Redis: set secrets.redisURL.name" --set replicas=3
refused "autoscaling.enabled runs more than one replica, which needs Redis" --set autoscaling.enabled=true
refused "config.oidc.client_secret is set by the chart: use secrets.clientSecret" --set config.oidc.client_secret=s3cret
refused "config.cookies.keys is set by the chart: use secrets.cookieKeys" --set 'config.cookies.keys={a:b}'
refused "config.redis.url is set by the chart: use secrets.redisURL" --set config.redis.url=redis://redis:6379
refused "config.admin_listen is set by the chart" --set config.admin_listen=127.0.0.1:9090
refused "env TH_REDIS_URL is set by the chart" --set 'env[0].name=TH_REDIS_URL' --set 'env[0].value=redis://x'
refused "secrets.cookieKeys.name is required" --set secrets.cookieKeys.name=
refused "terminationGracePeriodSeconds must be above preStopSleepSeconds" --set terminationGracePeriodSeconds=10
refused "chart requires kubeVersion: >=1.30.0-0" --kube-version 1.29.0

# rejected MESSAGE FILE: chartcheck must reject the manifests in FILE, saying MESSAGE.
rejected() {
	if "$chartcheck" <"$2" >"$tmp/check.log" 2>&1; then
		fail "chartcheck accepts $3"
	fi
	grep -qF -- "$1" "$tmp/check.log" || fail "chartcheck rejects $3 without saying \"$1\": $(cat "$tmp/check.log")"
	step "chartcheck rejects $3"
}
render() { "$helm" template th "$chart" --kube-version "$kube_version" "$@"; }
render --set-json 'extraVolumes=[{"name":"x","emptyDir":{},"emptyDri":{}}]' >"$tmp/bad.yaml"
rejected 'unknown field "emptyDri"' "$tmp/bad.yaml" "an unknown field"
render --set-json 'resources={"requests":{"cpu":"1 core"}}' >"$tmp/bad.yaml"
rejected "does not decode strictly" "$tmp/bad.yaml" "a bad quantity"
render --set securityContext.readOnlyRootFilesystem=false --set podSecurityContext.runAsNonRoot=false \
	--set securityContext.runAsNonRoot=false --set-json 'securityContext.capabilities={"drop":["NET_RAW"]}' >"$tmp/bad.yaml"
for want in "readOnlyRootFilesystem must be true" "runAsNonRoot must be true" "capabilities must drop ALL"; do
	rejected "$want" "$tmp/bad.yaml" "a container without $want"
done
sed 's#path: /readyz#path: /healthz#' "$tmp/default.yaml" >"$tmp/bad.yaml"
rejected 'readiness probe on "/healthz"' "$tmp/bad.yaml" "a readiness probe on /healthz"
sed 's#value: ":9090"#value: "127.0.0.1:9090"#' "$tmp/default.yaml" >"$tmp/bad.yaml"
rejected 'TH_ADMIN_LISTEN="127.0.0.1:9090"' "$tmp/bad.yaml" "an admin listener on loopback"
sed 's#^    cookies:#    redis:\n      url: redis://:hunter2@redis:6379\n    cookies:#' "$tmp/default.yaml" >"$tmp/bad.yaml"
rejected "a secret value in a ConfigMap" "$tmp/bad.yaml" "a Redis URL with a password in the ConfigMap"
sed 's#^  replicas: 1#  replicas: 2#' "$tmp/default.yaml" >"$tmp/bad.yaml"
rejected "replicas need Redis" "$tmp/bad.yaml" "two replicas without Redis"
render --set-json 'env=[{"name":"OTEL_EXPORTER_OTLP_HEADERS","value":"authorization=Bearer x"}]' >"$tmp/bad.yaml"
rejected "env OTEL_EXPORTER_OTLP_HEADERS holds a secret" "$tmp/bad.yaml" "a collector credential as a plain env value"
sed '/preStop:/,/seconds:/d' "$tmp/default.yaml" >"$tmp/bad.yaml"
rejected "no lifecycle.preStop.sleep" "$tmp/bad.yaml" "a pod without a preStop sleep"

step "ok ($((SECONDS - start)) s)"
