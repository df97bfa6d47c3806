{{/* Fails with a clear message unless the cluster serves a custom resource's API, so an
option that needs an operator (prometheus-operator, KEDA, a Gateway API implementation)
is never installed half-way, nor silently left out:
(dict "ctx" . "api" "monitoring.coreos.com/v1" "kind" "ServiceMonitor" "value" "monitoring.serviceMonitor.enabled" "needs" "prometheus-operator") */}}
{{- define "groupcast.requireApi" -}}
{{- $caps := .ctx.Capabilities.APIVersions }}
{{- /* a live cluster lists group/version/Kind; `helm template --api-versions` may give only group/version */}}
{{- if not (or ($caps.Has (printf "%s/%s" .api .kind)) ($caps.Has .api)) }}
{{- fail (printf "%s=true needs the %s custom resource (%s), which this cluster does not serve: install %s first, or set %s=false. To render offline, pass `--api-versions %s/%s` to helm template." .value .kind .api .needs .value .api .kind) }}
{{- end }}
{{- end }}

{{/* A container's preStop wait (seconds, so Services and Ingresses drop the endpoint before
SIGTERM): the kubelet's own sleep action where the cluster has it (Kubernetes 1.30+, on by
default), which needs no `sleep` binary in the image and no exec; `sleep` in the container
before that. (dict "ctx" . "seconds" 5) */}}
{{- define "groupcast.preStop" -}}
{{- $seconds := int .seconds }}
{{- if gt $seconds 0 }}
lifecycle:
  preStop:
    {{- if semverCompare ">=1.30-0" .ctx.Capabilities.KubeVersion.Version }}
    sleep:
      seconds: {{ $seconds }}
    {{- else }}
    exec:
      command: ["sleep", {{ $seconds | quote }}]
    {{- end }}
{{- end }}
{{- end }}
