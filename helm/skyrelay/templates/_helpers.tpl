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
{{- if and .Values.autoscaling.enabled (eq .Values.autoscaling.metric "external") (not (contains "metrics_service" .Values.telemetry.exportType)) -}}
{{- fail "autoscaling.metric=external needs telemetry.exportType to contain metrics_service (the self meters OAP turns into satellite_service_grpc_connect_count)" -}}
{{- end -}}
{{- end -}}
