{{/* A role's Deployment: (dict "ctx" . "component" "socket") */}}
{{- define "groupcast.deployment" -}}
{{- $ctx := .ctx }}
{{- $component := .component }}
{{- $values := index $ctx.Values $component }}
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
  {{- /* an HPA (the chart's, or KEDA's) owns the count: a fixed one would undo it on upgrade */}}
  {{- if not (or $values.autoscaling.enabled ($values.keda | default dict).enabled) }}
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
      {{- include "groupcast.podSpec" . | nindent 6 }}
{{- end }}
