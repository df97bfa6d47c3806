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
