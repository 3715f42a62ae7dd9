{{/* The chart's name. */}}
{{- define "tokenhandler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object's name. */}}
{{- define "tokenhandler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tokenhandler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenhandler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tokenhandler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tokenhandler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tokenhandler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokenhandler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tokenhandler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the pod finds its configuration and its secrets. */}}
{{- define "tokenhandler.configDir" -}}/etc/tokenhandler/config{{- end }}
{{- define "tokenhandler.configFile" -}}tokenhandler.yaml{{- end }}
{{- define "tokenhandler.secretsDir" -}}/etc/tokenhandler/secrets{{- end }}

{{/* "true" when a Redis URL Secret is configured. */}}
{{- define "tokenhandler.hasRedis" -}}
{{- if .Values.secrets.redisURL.name }}true{{ end }}
{{- end }}

{{/*
tokenhandler.validate: every refusal of the chart, with a message that says what to set
instead. Included by the Deployment and the ConfigMap, so no rendering gets past it.
*/}}
{{- define "tokenhandler.validate" -}}
{{- $v := .Values }}
{{- if and (gt (int $v.replicas) 1) (not (include "tokenhandler.hasRedis" .)) }}
{{- fail (printf "replicas: %d needs Redis: set secrets.redisURL.name to a Secret holding the Redis URL. Replicas coordinate refreshes through Redis (each refresh token is spent once between them, rotated tokens are shared, back-channel logout reaches every replica); without it two replicas refreshing one session both spend its refresh token and a provider with rotation ends the session." (int $v.replicas)) }}
{{- end }}
{{- if and $v.autoscaling.enabled (not (include "tokenhandler.hasRedis" .)) }}
{{- fail "autoscaling.enabled runs more than one replica, which needs Redis: set secrets.redisURL.name to a Secret holding the Redis URL (replicas coordinate refreshes through Redis)." }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- $c := $v.config | default dict }}
{{- if not (kindIs "map" $c) }}
{{- fail "config must be a mapping of tokenhandler configuration keys" }}
{{- end }}
{{- $owned := list
  (list "listen" "ports.http (the chart sets TH_LISTEN)")
  (list "admin_listen" "ports.admin (the chart sets TH_ADMIN_LISTEN on the pod's IP for the probes)")
  (list "oidc.client_secret" "secrets.clientSecret (a Secret; never a value in the ConfigMap)")
  (list "oidc.client_secret_file" "secrets.clientSecret")
  (list "oidc.client_key_file" "secrets.clientKey")
  (list "cookies.keys" "secrets.cookieKeys (a Secret; never a value in the ConfigMap)")
  (list "cookies.keys_file" "secrets.cookieKeys")
  (list "redis.url" "secrets.redisURL (a Secret: the URL may hold a password)")
  (list "redis.url_file" "secrets.redisURL")
  (list "dpop.key_file" "secrets.dpopKey")
  (list "token_signing.keys" "secrets.tokenSigningKeys")
  (list "tls.cert_file" "secrets.tls")
  (list "tls.key_file" "secrets.tls") }}
{{- range $owned }}
{{- $path := splitList "." (index . 0) }}
{{- $m := $c }}
{{- if gt (len $path) 1 }}
{{- $m = get $c (index $path 0) | default dict }}
{{- end }}
{{- if and (kindIs "map" $m) (hasKey $m (last $path)) }}
{{- fail (printf "config.%s is set by the chart: use %s instead" (index . 0) (index . 1)) }}
{{- end }}
{{- end }}
{{- range $v.env }}
{{- $n := .name | default "" }}
{{- if or (has $n (list "TH_LISTEN" "TH_ADMIN_LISTEN")) (hasPrefix "TH_OIDC_CLIENT_SECRET" $n) (hasPrefix "TH_OIDC_CLIENT_KEY" $n) (hasPrefix "TH_COOKIES_KEYS" $n) (hasPrefix "TH_REDIS_URL" $n) (hasPrefix "TH_DPOP_KEY" $n) (hasPrefix "TH_TOKEN_SIGNING_KEYS" $n) (hasPrefix "TH_TLS_" $n) }}
{{- fail (printf "env %s is set by the chart: use ports.* or secrets.* instead" $n) }}
{{- end }}
{{- end }}
{{- if not $v.secrets.cookieKeys.name }}
{{- fail "secrets.cookieKeys.name is required: a Secret holding cookie key pairs from `tokenhandler keygen`, one a line" }}
{{- end }}
{{- if and $v.secrets.tokenSigningKeys.name (not $v.secrets.tokenSigningKeys.keys) }}
{{- fail "secrets.tokenSigningKeys.keys must name the Secret's PEM keys (the first signs)" }}
{{- end }}
{{- if le (int $v.terminationGracePeriodSeconds) (int $v.preStopSleepSeconds) }}
{{- fail "terminationGracePeriodSeconds must be above preStopSleepSeconds, or the pod is killed before it drains (tokenhandler drains for up to 30 s after SIGTERM)" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (null the other)" }}
{{- end }}
{{- end }}

{{/*
tokenhandler.config: the YAML configuration file, values.config with the paths of the
mounted secrets. Only file paths come from secrets: no secret value is ever rendered.
*/}}
{{- define "tokenhandler.config" -}}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- $s := .Values.secrets }}
{{- $dir := include "tokenhandler.secretsDir" . }}
{{- $oidc := get $c "oidc" | default dict }}
{{- if $s.clientSecret.name }}
{{- $_ := set $oidc "client_secret_file" (printf "%s/client-secret" $dir) }}
{{- end }}
{{- if $s.clientKey.name }}
{{- $_ := set $oidc "client_key_file" (printf "%s/client-key.pem" $dir) }}
{{- end }}
{{- $_ := set $c "oidc" $oidc }}
{{- $cookies := get $c "cookies" | default dict }}
{{- $_ := set $cookies "keys_file" (printf "%s/cookie-keys" $dir) }}
{{- $_ := set $c "cookies" $cookies }}
{{- if $s.redisURL.name }}
{{- $redis := get $c "redis" | default dict }}
{{- $_ := set $redis "url_file" (printf "%s/redis-url" $dir) }}
{{- $_ := set $c "redis" $redis }}
{{- end }}
{{- if $s.dpopKey.name }}
{{- $dpop := get $c "dpop" | default dict }}
{{- $_ := set $dpop "key_file" (printf "%s/dpop-key.pem" $dir) }}
{{- $_ := set $c "dpop" $dpop }}
{{- end }}
{{- if $s.tokenSigningKeys.name }}
{{- $ts := get $c "token_signing" | default dict }}
{{- $paths := list }}
{{- range $i, $k := $s.tokenSigningKeys.keys }}
{{- $paths = append $paths (printf "%s/token-signing-%d.pem" $dir $i) }}
{{- end }}
{{- $_ := set $ts "keys" $paths }}
{{- $_ := set $c "token_signing" $ts }}
{{- end }}
{{- if $s.tls.name }}
{{- $tls := get $c "tls" | default dict }}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" $dir) }}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" $dir) }}
{{- $_ := set $c "tls" $tls }}
{{- end }}
{{- toYaml $c }}
{{- end }}
