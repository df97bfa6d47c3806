{{/* REDIS_URL as an EnvVar: a secret reference, or the URL built from the values. */}}
{{- define "groupcast.redisUrlEnv" -}}
{{- include "groupcast.redisCluster.check" . }}
- name: REDIS_URL
{{- if include "groupcast.redisCluster.enabled" . }}
  value: {{ include "groupcast.redisCluster.url" . | quote }}
{{- else if .Values.redis.enabled }}
  value: {{ printf "redis://%s:6379/0" (include "groupcast.componentName" (dict "ctx" . "component" "redis")) | quote }}
{{- else if .Values.externalRedis.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
{{- else if .Values.externalRedis.sentinel.hosts }}
{{- if not .Values.externalRedis.sentinel.masterName }}
{{- fail "externalRedis.sentinel.masterName is required with externalRedis.sentinel.hosts" }}
{{- end }}
  value: {{ printf "redis+sentinel://%s/%s/%d" (join "," .Values.externalRedis.sentinel.hosts) .Values.externalRedis.sentinel.masterName (int .Values.externalRedis.sentinel.db) | quote }}
{{- else if .Values.externalRedis.url }}
  value: {{ .Values.externalRedis.url | quote }}
{{- else }}
{{- fail "redis.enabled=false needs externalRedis.url, externalRedis.existingSecret or externalRedis.sentinel.hosts" }}
{{- end }}
{{- end }}

{{/* Environment shared by every groupcast container, then the role's own. */}}
{{- define "groupcast.env" -}}
{{- $ctx := .ctx }}
{{- $values := index $ctx.Values .component }}
envFrom:
  - configMapRef:
      name: {{ include "groupcast.fullname" $ctx }}
  - secretRef:
      name: {{ include "groupcast.secretName" $ctx }}
env:
  {{- include "groupcast.redisUrlEnv" $ctx | nindent 2 }}
  {{- if eq .component "http" }}
  - name: GUNICORN_BIND
    value: {{ include "groupcast.gunicornAddress" . | quote }}
  - name: GUNICORN_WORKERS
    value: {{ $values.workers | int64 | quote }}
  - name: PROMETHEUS_MULTIPROC_DIR
    value: /tmp/prometheus
  {{- else if eq .component "socket" }}
  - name: GROUPCAST_SOCKET_PORT
    value: "8001"
  - name: GROUPCAST_DRAIN_SECONDS
    value: {{ $values.drainSeconds | quote }}
  - name: GROUPCAST_MAX_CONNECTIONS
    value: {{ $values.maxConnections | int64 | quote }}
  {{- else if eq .component "worker" }}
  - name: GROUPCAST_METRICS_PORT
    value: "9102"
  - name: GROUPCAST_WORKER_CONCURRENCY
    value: {{ $values.concurrency | int64 | quote }}
  {{- end }}
  {{- with $values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Container port of each role; /metrics, /healthz and /readyz are served on it (http: by
the front, _front.tpl). */}}
{{- define "groupcast.port" -}}
{{- get (dict "http" 8000 "socket" 8001 "worker" 9102) . }}
{{- end }}

{{/* A role's pod spec, as its Deployment runs it: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.podSpec" -}}
{{- $ctx := .ctx }}
{{- $component := .component }}
{{- $values := index $ctx.Values $component }}
{{- $port := include "groupcast.port" $component | int }}
serviceAccountName: {{ include "groupcast.serviceAccountName" $ctx }}
automountServiceAccountToken: false
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
containers:
  - name: {{ $component }}
    image: {{ include "groupcast.image" . | quote }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    args: [{{ $component | quote }}]
    {{- include "groupcast.env" . | trim | nindent 4 }}
    {{- if eq $component "http" }}
    # No port: gunicorn listens on loopback, behind the front.
    livenessProbe:
      {{- include "groupcast.gunicornProbe" . | nindent 6 }}
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 6
    startupProbe:
      {{- include "groupcast.gunicornProbe" . | nindent 6 }}
      periodSeconds: 2
      timeoutSeconds: 5
      failureThreshold: 60
    {{- else }}
    ports:
      - name: metrics
        containerPort: {{ $port }}
        protocol: TCP
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      periodSeconds: 5
      timeoutSeconds: 3
      failureThreshold: 2
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 5
      failureThreshold: 6
    startupProbe:
      httpGet:
        path: /healthz
        port: metrics
      periodSeconds: 2
      failureThreshold: 60
    {{- end }}
    {{- with include "groupcast.preStop" (dict "ctx" $ctx "seconds" $values.preStopSleepSeconds) | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $ctx.Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if eq $component "http" }}
      - name: prometheus
        mountPath: /tmp/prometheus
      {{- end }}
  {{- if eq $component "http" }}
  {{- include "groupcast.frontContainer" . | nindent 2 }}
  {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- if eq $component "http" }}
  # prometheus_client's per-process files, read on every scrape: kept in memory.
  - name: prometheus
    emptyDir:
      medium: Memory
      sizeLimit: 64Mi
  {{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  - {{ toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "groupcast.selectorLabels" $ | fromYaml)))) | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- end }}
