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
