{{/* Chart name, truncated for DNS-1123 labels. */}}
{{- define "skyrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of every resource: <release>-<name>, or <release> when it contains the name. */}}
{{- define "skyrelay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "skyrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skyrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skyrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "skyrelay.labels" -}}
helm.sh/chart: {{ include "skyrelay.chart" . }}
{{ include "skyrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "skyrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "skyrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the kubernetes finder watches: the list, or the release namespace. */}}
{{- define "skyrelay.watchNamespaces" -}}
{{- if .Values.upstream.kubernetes.namespaces -}}
{{- join "," .Values.upstream.kubernetes.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Secret with the authentication tokens: the existing one, or the chart's (empty when neither). */}}
{{- define "skyrelay.authSecretName" -}}
{{- if .Values.authentication.existingSecret -}}
{{- .Values.authentication.existingSecret -}}
{{- else if or .Values.authentication.upstreamToken .Values.authentication.serverToken -}}
{{- printf "%s-auth" (include "skyrelay.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* preStop sleep + drain grace + margin: the kubelet must not kill skyrelay mid-drain. */}}
{{- define "skyrelay.terminationGracePeriodSeconds" -}}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int .Values.shutdown.gracePeriodSeconds) (int .Values.shutdown.terminationMarginSeconds) -}}
{{- end -}}

{{/* Deployment, or StatefulSet with persistence.type pvc (a claim per pod). */}}
{{- define "skyrelay.workloadKind" -}}
{{- if and .Values.persistence.enabled (eq .Values.persistence.type "pvc") -}}
StatefulSet
{{- else -}}
Deployment
{{- end -}}
{{- end -}}

{{/* The headless Service: asked for, or governing the StatefulSet. */}}
{{- define "skyrelay.headlessService" -}}
{{- if or .Values.service.headless (eq (include "skyrelay.workloadKind" .) "StatefulSet") -}}
true
{{- end -}}
{{- end -}}

{{/*
SKYRELAY_QUEUE_DISK_MAX_BYTES: persistence.diskMaxBytes, or 90% of persistence.size in MiB (the
rest is headroom for the file system and the segment being written: an emptyDir over its
sizeLimit gets the pod evicted, a full claim fails writes). Empty when neither is set (skyrelay's
default, 1GiB).
*/}}
{{- define "skyrelay.diskMaxBytes" -}}
{{- $p := .Values.persistence -}}
{{- if $p.diskMaxBytes -}}
{{- $p.diskMaxBytes -}}
{{- else if $p.size -}}
{{- $s := toString $p.size -}}
{{- $n := regexFind "^[0-9]+" $s -}}
{{- $unit := trimPrefix $n $s -}}
{{- $mult := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if or (not $n) (not (hasKey $mult $unit)) -}}
{{- fail (printf "persistence.size %q: write it as an integer with Ki, Mi, Gi, Ti, K, M, G or T (e.g. 2Gi), or set persistence.diskMaxBytes" $s) -}}
{{- end -}}
{{- $mib := div (mul (int64 $n) (get $mult $unit) 9) (mul 10 1048576) -}}
{{- if lt (int64 $mib) 1 -}}
{{- fail (printf "persistence.size %q is too small for a disk queue (90%% of it is under 1MiB)" $s) -}}
{{- end -}}
{{- printf "%dMiB" (int64 $mib) -}}
{{- end -}}
{{- end -}}

{{/* Where a TLS Secret is mounted: /etc/skyrelay/tls/<server|client-ca|upstream-ca|upstream-client>. */}}
{{- define "skyrelay.tlsDir" -}}
{{- printf "/etc/skyrelay/tls/%s" . -}}
{{- end -}}

{{/*
The TLS Secrets the pod mounts, as YAML "volume name: Secret name" (empty when none): tls-server
(tls.server.secretName), tls-client-ca (tls.server.clientCASecretName, with clientAuth),
tls-upstream-ca (tls.upstream.caSecretName), tls-upstream-client (tls.upstream.clientSecretName).
*/}}
{{- define "skyrelay.tlsVolumes" -}}
{{- $t := .Values.tls -}}
{{- if $t.server.enabled }}
tls-server: {{ $t.server.secretName | quote }}
{{- if and (ne $t.server.clientAuth "none") $t.server.clientCASecretName }}
tls-client-ca: {{ $t.server.clientCASecretName | quote }}
{{- end }}
{{- end }}
{{- if $t.upstream.enabled }}
{{- with $t.upstream.caSecretName }}
tls-upstream-ca: {{ . | quote }}
{{- end }}
{{- with $t.upstream.clientSecretName }}
tls-upstream-client: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* appProtocol of the gRPC port: grpc (h2c), or tls when the port speaks TLS, so that a mesh
(Istio) passes the agents' TLS through instead of parsing it as cleartext HTTP/2. */}}
{{- define "skyrelay.grpcAppProtocol" -}}
{{- ternary "tls" "grpc" (eq (toString .Values.tls.server.enabled) "true") -}}
{{- end -}}

{{/* Fail early on values skyrelay would reject at start. */}}
{{- define "skyrelay.validate" -}}
{{- if not (has .Values.upstream.finder (list "static" "dns" "kubernetes")) -}}
{{- fail (printf "upstream.finder must be static, dns or kubernetes (got %q)" .Values.upstream.finder) -}}
{{- end -}}
{{- if and (eq .Values.upstream.finder "kubernetes") (not .Values.upstream.kubernetes.labelSelector) -}}
{{- fail "upstream.kubernetes.labelSelector is required with upstream.finder=kubernetes (e.g. app=oap)" -}}
{{- end -}}
{{- if not (has .Values.upstream.kubernetes.kind (list "pod" "endpoints")) -}}
{{- fail (printf "upstream.kubernetes.kind must be pod or endpoints (got %q)" .Values.upstream.kubernetes.kind) -}}
{{- end -}}
{{- with .Values.persistence -}}
{{- if .enabled -}}
{{- if not (has .type (list "emptyDir" "pvc")) -}}
{{- fail (printf "persistence.type must be emptyDir or pvc (got %q)" .type) -}}
{{- end -}}
{{- if not (has .sync (list "none" "interval" "always")) -}}
{{- fail (printf "persistence.sync must be none, interval or always (got %q)" .sync) -}}
{{- end -}}
{{- if not (hasPrefix "/" (toString .mountPath)) -}}
{{- fail (printf "persistence.mountPath must be an absolute path (got %q)" .mountPath) -}}
{{- end -}}
{{- if and (eq .type "pvc") (not .size) -}}
{{- fail "persistence.size is required with persistence.type=pvc (the claim's storage request)" -}}
{{- end -}}
{{- if and (eq .type "pvc") (not .accessModes) -}}
{{- fail "persistence.accessModes is required with persistence.type=pvc (ReadWriteOnce)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.tls -}}
{{- if and .server.enabled (not .server.secretName) -}}
{{- fail "tls.server.secretName is required with tls.server.enabled (a kubernetes.io/tls Secret: tls.crt, tls.key)" -}}
{{- end -}}
{{- if not (has .server.clientAuth (list "none" "optional" "require")) -}}
{{- fail (printf "tls.server.clientAuth must be none, optional or require (got %q)" .server.clientAuth) -}}
{{- end -}}
{{- if and .server.clientCASecretName (or (not .server.enabled) (eq .server.clientAuth "none")) -}}
{{- fail "tls.server.clientCASecretName is set but no client certificate is asked for: set tls.server.enabled and tls.server.clientAuth optional or require" -}}
{{- end -}}
{{- if and (or .upstream.caSecretName .upstream.clientSecretName .upstream.serverName .upstream.insecureSkipVerify) (not .upstream.enabled) -}}
{{- fail "tls.upstream.* is set but tls.upstream.enabled is false: OAP would be reached in cleartext" -}}
{{- end -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)?$" (toString .reloadInterval)) -}}
{{- fail (printf "tls.reloadInterval must be a duration such as 60s, 5m or 0 (got %q)" (toString .reloadInterval)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.server.enabled -}}
{{- /* the gRPC port speaks TLS only: the kubelet's gRPC probe connects in cleartext */ -}}
{{- range $probe := list .Values.readinessProbe .Values.livenessProbe -}}
{{- if and $probe (hasKey $probe "grpc") -}}
{{- fail "tls.server.enabled: the gRPC port speaks TLS only and a grpc: probe connects in cleartext; probe the admin port over HTTP (/readyz, /healthz), as the default probes do" -}}
{{- end -}}
{{- end -}}
{{- if .Values.config.override -}}
{{- if not (and (contains "SATELLITE_GRPC_TLS_CERT_FILE" .Values.config.override) (contains "SATELLITE_GRPC_TLS_KEY_FILE" .Values.config.override)) -}}
{{- fail "tls.server.enabled with config.override: the override must keep server.tls's placeholders (${SATELLITE_GRPC_TLS_CERT_FILE:} and ${SATELLITE_GRPC_TLS_KEY_FILE:} at least), or the port stays in cleartext" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.upstream.enabled .Values.config.override (not (contains "SATELLITE_GRPC_ENABLE_TLS" .Values.config.override)) -}}
{{- fail "tls.upstream.enabled with config.override: the override must keep upstream.tls's placeholders (${SATELLITE_GRPC_ENABLE_TLS:false} at least), or OAP is reached in cleartext" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (eq .Values.autoscaling.metric "external") (not (contains "metrics_service" .Values.telemetry.exportType)) -}}
{{- fail "autoscaling.metric=external needs telemetry.exportType to contain metrics_service (the self meters OAP turns into satellite_service_grpc_connect_count)" -}}
{{- end -}}
{{- end -}}
