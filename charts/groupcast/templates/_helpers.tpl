{{/* Names, as `helm create` makes them. */}}
{{- define "groupcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "groupcast.fullname" -}}
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

{{- define "groupcast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's resources: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.componentName" -}}
{{- printf "%s-%s" (include "groupcast.fullname" .ctx | trunc 56 | trimSuffix "-") .component }}
{{- end }}

{{/* Labels of one component's resources: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.labels" -}}
helm.sh/chart: {{ include "groupcast.chart" .ctx }}
{{ include "groupcast.selectorLabels" . }}
{{- /* a label value holds 63 characters at most, a tag up to 128 (skaffold's local builds: 64) */}}
app.kubernetes.io/version: {{ regexReplaceAll "[-_.]+$" (.ctx.Values.image.tag | default .ctx.Chart.AppVersion | trunc 63) "" | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: groupcast
{{- end }}

{{- define "groupcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "groupcast.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "groupcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "groupcast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "groupcast.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "groupcast.fullname" .) }}
{{- end }}

{{/* The groupcast image of one component: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.image" -}}
{{- $values := index .ctx.Values .component | default dict }}
{{- $override := $values.image | default dict }}
{{- $repository := $override.repository | default .ctx.Values.image.repository }}
{{- $tag := $override.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/* REDIS_URL as an EnvVar: a secret reference, or the URL built from the values. */}}
{{- define "groupcast.redisUrlEnv" -}}
- name: REDIS_URL
{{- if .Values.redis.enabled }}
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
    value: "0.0.0.0:8000"
  - name: GUNICORN_WORKERS
    value: {{ $values.workers | int64 | quote }}
  - name: GUNICORN_THREADS
    value: {{ $values.threads | int64 | quote }}
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

{{/* Container port of each role; /metrics, /healthz and /readyz are served on it. */}}
{{- define "groupcast.port" -}}
{{- get (dict "http" 8000 "socket" 8001 "worker" 9102) . }}
{{- end }}

{{/* A role's Deployment: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.deployment" -}}
{{- $ctx := .ctx }}
{{- $component := .component }}
{{- $values := index $ctx.Values $component }}
{{- $port := include "groupcast.port" $component | int }}
{{- if eq $component "socket" }}
{{- if le (float64 $values.terminationGracePeriodSeconds) (addf $values.preStopSleepSeconds $values.drainSeconds 5) }}
{{- fail "socket.terminationGracePeriodSeconds must exceed socket.preStopSleepSeconds + socket.drainSeconds + 5" }}
{{- end }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "groupcast.componentName" . }}
  labels:
    {{- include "groupcast.labels" . | nindent 4 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "groupcast.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      annotations:
        checksum/config: {{ include (print $ctx.Template.BasePath "/configmap.yaml") $ctx | sha256sum }}
        checksum/secrets: {{ toJson $ctx.Values.secrets | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "groupcast.labels" . | nindent 8 }}
    spec:
      serviceAccountName: {{ include "groupcast.serviceAccountName" $ctx }}
      automountServiceAccountToken: false
      {{- with $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $ctx.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ $component }}
          image: {{ include "groupcast.image" . | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          args: [{{ $component | quote }}]
          {{- include "groupcast.env" . | trim | nindent 10 }}
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
          {{- if gt (int $values.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ $values.preStopSleepSeconds | quote }}]
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $component "http" }}
            - name: prometheus
              mountPath: /tmp/prometheus
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
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{ toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "groupcast.selectorLabels" $ | fromYaml)))) | nindent 10 | trim }}
        {{- end }}
      {{- end }}
{{- end }}

{{/* A role's Service: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.service" -}}
{{- $values := index .ctx.Values .component }}
{{- $portName := get (dict "http" "http" "socket" "ws" "worker" "metrics") .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "groupcast.componentName" . }}
  labels:
    {{- include "groupcast.labels" . | nindent 4 }}
  {{- with $values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $values.service.type | default "ClusterIP" }}
  selector:
    {{- include "groupcast.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ $portName }}
      port: {{ $values.service.port }}
      targetPort: metrics
      protocol: TCP
{{- end }}

{{/* A role's HorizontalPodAutoscaler: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.hpa" -}}
{{- $values := index .ctx.Values .component }}
{{- with $values.autoscaling }}
{{- if .enabled }}
{{- if gt (int .minReplicas) (int .maxReplicas) }}
{{- fail (printf "%s.autoscaling.minReplicas must not exceed maxReplicas" $.component) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "groupcast.componentName" $ }}
  labels:
    {{- include "groupcast.labels" $ | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "groupcast.componentName" $ }}
  minReplicas: {{ .minReplicas }}
  maxReplicas: {{ .maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .targetCPUUtilizationPercentage }}
    {{- if gt (int (.targetConnectionsPerPod | default 0)) 0 }}
    {{- if not ($.ctx.Capabilities.APIVersions.Has "custom.metrics.k8s.io/v1beta1") }}
    {{- fail "socket.autoscaling.targetConnectionsPerPod needs a custom metrics adapter serving custom.metrics.k8s.io/v1beta1 (e.g. prometheus-adapter); set it to 0 or install one" }}
    {{- end }}
    - type: Pods
      pods:
        metric:
          name: groupcast_connections
        target:
          type: AverageValue
          averageValue: {{ .targetConnectionsPerPod | quote }}
    {{- end }}
  {{- if .scaleDownStabilizationSeconds }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ .scaleDownStabilizationSeconds }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* A role's PodDisruptionBudget: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.pdb" -}}
{{- $values := index .ctx.Values .component }}
{{- if $values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "groupcast.componentName" . }}
  labels:
    {{- include "groupcast.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "groupcast.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
