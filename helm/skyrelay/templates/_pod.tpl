{{/*
The pod template of the workload: the Deployment's, or the StatefulSet's with persistence.type pvc
(templates/deployment.yaml, templates/statefulset.yaml). Indented by the caller.
*/}}
{{- define "skyrelay.podTemplate" -}}
{{- $fullname := include "skyrelay.fullname" . -}}
{{- $k8s := eq .Values.upstream.finder "kubernetes" -}}
{{- $persist := .Values.persistence.enabled -}}
{{- /* Satellite-named variables derived from the values; .Values.env entries win. */ -}}
{{- $env := dict
      "SATELLITE_GRPC_ADDRESS" (printf ":%d" (int .Values.ports.grpc))
      "SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS" (printf ":%d" (int .Values.ports.prometheus))
      "SATELLITE_GRPC_CLIENT_FINDER" .Values.upstream.finder
      "SATELLITE_GRPC_ACCEPT_LIMIT_CONNECTION_COUNT" (toString (int .Values.server.maxConnections))
      "SKYRELAY_SERVER_MAX_CONNECTION_AGE" (toString .Values.server.maxConnectionAge)
      "SKYRELAY_WORKERS" (toString (int .Values.server.workers))
      "SKYRELAY_ROUTING_POLICY" .Values.routing.policy
      "SATELLITE_TELEMETRY_EXPORT_TYPE" .Values.telemetry.exportType
      "SATELLITE_TELEMETRY_SERVICE" .Values.telemetry.service
      "SATELLITE_LOGGER_LEVEL" .Values.logLevel
      "SKYRELAY_SHUTDOWN_GRACE_PERIOD" (printf "%ds" (int .Values.shutdown.gracePeriodSeconds))
-}}
{{- if $k8s }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KUBERNETES_NAMESPACE" (include "skyrelay.watchNamespaces" .) }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KUBERNETES_KIND" .Values.upstream.kubernetes.kind }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KUBERNETES_SELECTOR_LABEL" .Values.upstream.kubernetes.labelSelector }}
{{- if .Values.upstream.kubernetes.fieldSelector }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KUBERNETES_SELECTOR_FIELD" .Values.upstream.kubernetes.fieldSelector }}
{{- end }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KUBERNETES_EXTRA_PORT" (toString (int .Values.upstream.kubernetes.extraPort)) }}
{{- else }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT" .Values.upstream.addresses }}
{{- end }}
{{- if $persist }}
{{- /* the disk queue: one directory per pod (an emptyDir, or the pod's own claim) */ -}}
{{- $_ := set $env "SKYRELAY_QUEUE_DIR" .Values.persistence.mountPath }}
{{- $max := include "skyrelay.diskMaxBytes" . }}
{{- if $max }}
{{- $_ := set $env "SKYRELAY_QUEUE_DISK_MAX_BYTES" $max }}
{{- end }}
{{- $_ := set $env "SKYRELAY_QUEUE_DISK_SYNC" .Values.persistence.sync }}
{{- end }}
{{- /* TLS: the files of the mounted Secrets (skyrelay.tls* helpers, volumes below) */ -}}
{{- $tls := .Values.tls }}
{{- if $tls.server.enabled }}
{{- $_ := set $env "SATELLITE_GRPC_TLS_CERT_FILE" (printf "%s/tls.crt" (include "skyrelay.tlsDir" "server")) }}
{{- $_ := set $env "SATELLITE_GRPC_TLS_KEY_FILE" (printf "%s/tls.key" (include "skyrelay.tlsDir" "server")) }}
{{- $_ := set $env "SKYRELAY_SERVER_TLS_RELOAD_INTERVAL" (toString $tls.reloadInterval) }}
{{- if ne $tls.server.clientAuth "none" }}
{{- $_ := set $env "SKYRELAY_SERVER_TLS_CLIENT_AUTH" $tls.server.clientAuth }}
{{- if $tls.server.clientCASecretName }}
{{- $_ := set $env "SKYRELAY_SERVER_TLS_CLIENT_CA_FILE" (printf "%s/%s" (include "skyrelay.tlsDir" "client-ca") $tls.server.clientCAKey) }}
{{- else }}
{{- $_ := set $env "SKYRELAY_SERVER_TLS_CLIENT_CA_FILE" (printf "%s/ca.crt" (include "skyrelay.tlsDir" "server")) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $tls.upstream.enabled }}
{{- $_ := set $env "SATELLITE_GRPC_ENABLE_TLS" "true" }}
{{- $_ := set $env "SKYRELAY_UPSTREAM_TLS_RELOAD_INTERVAL" (toString $tls.reloadInterval) }}
{{- if $tls.upstream.caSecretName }}
{{- $_ := set $env "SATELLITE_grpc_CA_PEM_PATH" (printf "%s/%s" (include "skyrelay.tlsDir" "upstream-ca") $tls.upstream.caKey) }}
{{- end }}
{{- if $tls.upstream.clientSecretName }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_PEM_PATH" (printf "%s/tls.crt" (include "skyrelay.tlsDir" "upstream-client")) }}
{{- $_ := set $env "SATELLITE_GRPC_CLIENT_KEY_PATH" (printf "%s/tls.key" (include "skyrelay.tlsDir" "upstream-client")) }}
{{- end }}
{{- if $tls.upstream.serverName }}
{{- $_ := set $env "SKYRELAY_UPSTREAM_TLS_SERVER_NAME" $tls.upstream.serverName }}
{{- end }}
{{- if $tls.upstream.insecureSkipVerify }}
{{- $_ := set $env "SATELLITE_GRPC_INSECURE_SKIP_VERIFY" "true" }}
{{- end }}
{{- end }}
{{- $tlsVolumes := include "skyrelay.tlsVolumes" . | fromYaml }}
{{- range $k, $v := .Values.env }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- $authSecret := include "skyrelay.authSecretName" . -}}
{{- $ann := dict -}}
{{- if and .Values.metrics.scrapeAnnotations (contains "prometheus" .Values.telemetry.exportType) }}
{{- $_ := set $ann "prometheus.io/scrape" "true" }}
{{- $_ := set $ann "prometheus.io/port" (toString (int .Values.ports.prometheus)) }}
{{- $_ := set $ann "prometheus.io/path" "/metrics" }}
{{- end }}
{{- if .Values.config.override }}
{{- $_ := set $ann "checksum/config" (sha256sum .Values.config.override) }}
{{- end }}
{{- range $k, $v := .Values.podAnnotations }}
{{- $_ := set $ann $k (toString $v) }}
{{- end }}
metadata:
  labels:
    {{- include "skyrelay.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $ann }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "skyrelay.serviceAccountName" . }}
  # the API token is needed only by the kubernetes finder
  automountServiceAccountToken: {{ $k8s }}
  # preStop sleep + shutdown grace + margin
  terminationGracePeriodSeconds: {{ include "skyrelay.terminationGracePeriodSeconds" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or (has .Values.antiAffinity (list "soft" "hard")) .Values.nodeAffinity }}
  affinity:
    {{- if eq .Values.antiAffinity "hard" }}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "skyrelay.selectorLabels" . | nindent 14 }}
    {{- else if eq .Values.antiAffinity "soft" }}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "skyrelay.selectorLabels" . | nindent 16 }}
    {{- end }}
    {{- with .Values.nodeAffinity }}
    nodeAffinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: skyrelay
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      ports:
        - name: grpc
          containerPort: {{ .Values.ports.grpc }}
          protocol: TCP
        - name: http-metrics
          containerPort: {{ .Values.ports.prometheus }}
          protocol: TCP
      env:
        {{- range $k := keys $env | sortAlpha }}
        - name: {{ $k }}
          value: {{ get $env $k | quote }}
        {{- end }}
        {{- if not (hasKey .Values.env "SATELLITE_TELEMETRY_INSTANCE") }}
        # self meters' instance = the pod name
        - name: SATELLITE_TELEMETRY_INSTANCE
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- if $authSecret }}
        {{- if or .Values.authentication.existingSecret .Values.authentication.upstreamToken }}
        - name: SATELLITE_GRPC_AUTHENTICATION
          valueFrom:
            secretKeyRef:
              name: {{ $authSecret }}
              key: {{ .Values.authentication.upstreamTokenKey }}
              {{- if not .Values.authentication.upstreamToken }}
              # existingSecret without this key: no upstream token (OAP refuses, visibly)
              optional: true
              {{- end }}
        {{- end }}
        {{- if or .Values.authentication.existingSecret .Values.authentication.serverToken }}
        - name: SKYRELAY_SERVER_AUTHENTICATION
          valueFrom:
            secretKeyRef:
              name: {{ $authSecret }}
              key: {{ .Values.authentication.serverTokenKey }}
              {{- if and (not .Values.authentication.serverToken) (not .Values.authentication.serverTokenRequired) }}
              # serverTokenRequired: false: a missing key turns the agent token check off
              optional: true
              {{- end }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if gt (int .Values.lifecycle.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          # leave the Service endpoints before SIGTERM starts the drain
          exec:
            command: ["/bin/sleep", "{{ int .Values.lifecycle.preStopSleepSeconds }}"]
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or .Values.config.override $persist $tlsVolumes }}
      volumeMounts:
        {{- if .Values.config.override }}
        - name: config
          mountPath: /etc/skyrelay/skyrelay.yaml
          subPath: skyrelay.yaml
          readOnly: true
        {{- end }}
        {{- if $persist }}
        # the disk queue (SKYRELAY_QUEUE_DIR): {{ ternary "this pod's own PersistentVolumeClaim" "an emptyDir" (eq .Values.persistence.type "pvc") }}
        - name: queue
          mountPath: {{ .Values.persistence.mountPath }}
        {{- end }}
        {{- if $tlsVolumes }}
        # TLS Secrets, each a whole directory, never a subPath: Kubernetes renews a Secret by
        # swapping its ..data symlink, which only a directory mount follows; skyrelay notices
        # the new files (tls.reloadInterval) and uses them without a restart
        {{- end }}
        {{- range $name := keys $tlsVolumes | sortAlpha }}
        - name: {{ $name }}
          mountPath: {{ include "skyrelay.tlsDir" (trimPrefix "tls-" $name) }}
          readOnly: true
        {{- end }}
      {{- end }}
  {{- if or .Values.config.override (and $persist (eq .Values.persistence.type "emptyDir")) $tlsVolumes }}
  volumes:
    {{- if .Values.config.override }}
    - name: config
      configMap:
        name: {{ $fullname }}
    {{- end }}
    {{- if and $persist (eq .Values.persistence.type "emptyDir") }}
    # kept across container restarts, lost with the pod
    - name: queue
      emptyDir:
        {{- if .Values.persistence.size }}
        sizeLimit: {{ .Values.persistence.size }}
        {{- else }} {}
        {{- end }}
    {{- end }}
    {{- if $tlsVolumes }}
    # TLS Secrets: files owned by root, group = the pod's fsGroup (podSecurityContext), mode 0440
    {{- end }}
    {{- range $name := keys $tlsVolumes | sortAlpha }}
    - name: {{ $name }}
      secret:
        secretName: {{ get $tlsVolumes $name }}
        defaultMode: 0440
    {{- end }}
  {{- end }}
{{- end -}}
