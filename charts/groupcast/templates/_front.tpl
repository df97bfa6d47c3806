{{/* gunicorn's address in an http pod: loopback only, so every client goes through the front. */}}
{{- define "groupcast.gunicornAddress" -}}
127.0.0.1:8080
{{- end }}

{{/* The http pod's front: nginx (`http-front`, same image) on the pod's port 8000, reading
each request whole before passing it to gunicorn on loopback. (dict "ctx" . "component" "http") */}}
{{- define "groupcast.frontContainer" -}}
{{- $ctx := .ctx }}
{{- $values := index $ctx.Values .component }}
{{- $front := $values.front }}
- name: front
  image: {{ include "groupcast.image" . | quote }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  args: ["http-front"]
  # The ConfigMap for GROUPCAST_MAX_BODY_BYTES; no Secret: the front needs none.
  envFrom:
    - configMapRef:
        name: {{ include "groupcast.fullname" $ctx }}
  env:
    - name: GROUPCAST_FRONT_BIND
      value: "0.0.0.0:8000"
    - name: GROUPCAST_FRONT_UPSTREAM
      value: {{ include "groupcast.gunicornAddress" . | quote }}
    - name: GROUPCAST_HTTP_MAX_CONNECTIONS
      value: {{ $front.maxConnections | int64 | quote }}
    - name: GROUPCAST_HTTP_HEADER_TIMEOUT
      value: {{ $front.headerTimeoutSeconds | int64 | quote }}
    - name: GROUPCAST_HTTP_BODY_TIMEOUT
      value: {{ $front.bodyTimeoutSeconds | int64 | quote }}
    - name: GROUPCAST_HTTP_KEEPALIVE_TIMEOUT
      value: {{ $front.keepaliveTimeoutSeconds | int64 | quote }}
    - name: GROUPCAST_MAX_HEADER_BYTES
      value: {{ $front.maxHeaderBytes | int64 | quote }}
  ports:
    - name: metrics
      containerPort: 8000
      protocol: TCP
  # Ready when the whole way in answers: nginx, gunicorn, Redis.
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 2
  # Alive while nginx listens; a TCP probe, so clients holding every connection cannot fail it.
  livenessProbe:
    tcpSocket:
      port: metrics
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 6
  startupProbe:
    tcpSocket:
      port: metrics
    periodSeconds: 1
    failureThreshold: 30
  {{- with include "groupcast.preStop" (dict "ctx" $ctx "seconds" $values.preStopSleepSeconds) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  resources:
    {{- toYaml $front.resources | nindent 4 }}
  securityContext:
    {{- toYaml $ctx.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* gunicorn's probes in an http pod: straight to it on loopback (exec), so neither a busy
front nor one restarting makes the kubelet restart gunicorn. */}}
{{- define "groupcast.gunicornProbe" -}}
exec:
  command:
    - python
    - -c
    - {{ printf "import urllib.request; urllib.request.urlopen('http://%s/healthz', timeout=4)" (include "groupcast.gunicornAddress" .) | quote }}
{{- end }}
