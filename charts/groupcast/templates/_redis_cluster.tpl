{{/* The in-chart Redis Cluster (redis.cluster.enabled): names, nodes and checks. */}}

{{/* Is the in-chart Redis a cluster? "true" or "" */}}
{{- define "groupcast.redisCluster.enabled" -}}
{{- if and .Values.redis.enabled .Values.redis.cluster.enabled }}true{{ end }}
{{- end }}

{{/* The StatefulSet's name: at most 52 characters, because the StatefulSet controller labels
its pods with `<name>-<10-character hash>`, a label value of 63 at most. */}}
{{- define "groupcast.redisCluster.name" -}}
{{- printf "%s-redis-cluster" (include "groupcast.fullname" . | trunc 38 | trimSuffix "-") }}
{{- end }}

{{- define "groupcast.redisCluster.headless" -}}
{{- printf "%s-headless" (include "groupcast.redisCluster.name" .) }}
{{- end }}

{{/* The create Job of this revision: at most 63 characters (its pods' job-name label). */}}
{{- define "groupcast.redisCluster.createJob" -}}
{{- printf "%s-create-%d" (include "groupcast.redisCluster.name" . | trunc 44 | trimSuffix "-") .Release.Revision }}
{{- end }}

{{- define "groupcast.redisCluster.size" -}}
{{- mul .Values.redis.cluster.masters (add1 .Values.redis.cluster.replicasPerMaster) }}
{{- end }}

{{/* The stable DNS name of every node, <pod>.<headless Service>.<namespace>.svc, but with
the pod's name as "%s" (the nodes announce theirs with $(POD_NAME) in its place). */}}
{{- define "groupcast.redisCluster.hostname" -}}
{{- printf "%%s.%s.%s.svc" (include "groupcast.redisCluster.headless" .) .Release.Namespace }}
{{- end }}

{{/* Every node as host:port by its stable DNS name, space-separated: the roles' seeds and the
scripts' node list. */}}
{{- define "groupcast.redisCluster.nodes" -}}
{{- $name := include "groupcast.redisCluster.name" . }}
{{- $hostname := include "groupcast.redisCluster.hostname" . }}
{{- $nodes := list }}
{{- range $i := until (include "groupcast.redisCluster.size" . | int) }}
{{- $nodes = append $nodes (printf "%s:6379" (printf $hostname (printf "%s-%d" $name $i))) }}
{{- end }}
{{- join " " $nodes }}
{{- end }}

{{/* REDIS_URL of the roles: every node a seed, so any one answering is enough to start. */}}
{{- define "groupcast.redisCluster.url" -}}
{{- printf "redis+cluster://%s" (include "groupcast.redisCluster.nodes" . | splitList " " | join ",") }}
{{- end }}

{{/* Values that cannot work, with what to do instead (every cluster template includes it). */}}
{{- define "groupcast.redisCluster.check" -}}
{{- $cluster := .Values.redis.cluster }}
{{- if and $cluster.enabled (not .Values.redis.enabled) }}
{{- fail "redis.cluster.enabled=true runs a Redis Cluster in the chart and needs redis.enabled=true; for a cluster outside it, set externalRedis.url: redis+cluster://host:port,... instead" }}
{{- end }}
{{- if and (include "groupcast.redisCluster.enabled" .) (not .Values.redis.persistence.enabled) }}
{{- fail "redis.cluster.enabled=true needs redis.persistence.enabled=true: a node keeps its identity (nodes.conf) and its data on its volume, and a replaced pod without them cannot rejoin the cluster" }}
{{- end }}
{{- if include "groupcast.redisCluster.enabled" . }}
{{- /* on an upgrade: the create Job adds no nodes, and Redis moves no slots by itself */}}
{{- $existing := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "groupcast.redisCluster.name" .) }}
{{- $size := include "groupcast.redisCluster.size" . | int }}
{{- if and $existing (ne (int $existing.spec.replicas) $size) }}
{{- fail (printf "redis.cluster.masters x (1 + redis.cluster.replicasPerMaster) = %d, but the cluster has %d nodes: the chart does not reshard a running cluster. Keep the values, or add or remove nodes with redis-cli --cluster add-node / del-node and reshard (docs/deploy.md)" $size (int $existing.spec.replicas)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* One of files/redis-cluster/*.sh as a `sh -c` argument, its comment lines left out (they
are for readers of the file, not for every probe run): (dict "ctx" . "script" "ready.sh") */}}
{{- define "groupcast.redisCluster.script" -}}
{{- regexReplaceAll "(?m)^[ \\t]*#.*\\n" (.ctx.Files.Get (printf "files/redis-cluster/%s" .script)) "" | quote }}
{{- end }}
