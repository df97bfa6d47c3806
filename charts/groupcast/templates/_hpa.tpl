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
