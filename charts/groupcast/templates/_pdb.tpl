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
