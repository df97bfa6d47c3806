#!/usr/bin/env bash
# `make e2e`: groupcast on a real kind cluster, offline.
#   1. host packages and podman's configuration, then the pinned tool chain and the kind node
#      image (e2e/toolchain.sh, e2e/node-image.sh; cached)
#   2. a check that podman networks resolve container names, then a kind cluster from
#      e2e/kind-config.yaml (podman provider) with the pod network fixed up
#   3. the groupcast image and Redis image loaded, the chart installed with `helm install --wait`
#   4. `helm test`, then the scenarios in e2e/tests/ (pytest), then `skaffold run -p kind,podman`
#      into a second namespace with its own `helm test`
#   5. teardown, always: pod logs + events on failure, cluster deleted, port-forwards stopped
#
# Environment: E2E_KEEP=1 keeps the cluster after the run (for debugging; delete it with
# `kind delete cluster --name groupcast-e2e`), E2E_PYTEST_ARGS adds pytest arguments,
# E2E_HELM_ARGS adds `helm install` arguments.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER=${E2E_CLUSTER:-groupcast-e2e}
NAMESPACE=groupcast
SKAFFOLD_NAMESPACE=groupcast-skaffold   # the skaffold step's release, beside the scenarios' one
RELEASE=groupcast
CHART=$ROOT/charts/groupcast
REDIS_IMAGE=localhost/groupcast-redis:7
HTTP_NODE_PORT=30080   # e2e NodePort Services, mapped to loopback by kind-config.yaml
SOCKET_NODE_PORT=30081
PYTHON=$ROOT/.venv/bin/python
WORK=$E2E_DIR/.work
export KUBECONFIG=$WORK/kubeconfig
export E2E_TIMINGS=$WORK/timings.txt
PORT_FORWARD_PIDS=$WORK/port-forward.pids
DIAG=$WORK/diagnostics

# bounded waits (seconds)
CREATE_TIMEOUT=600
NODE_READY_TIMEOUT=180
SYSTEM_PODS_TIMEOUT=240
INSTALL_TIMEOUT=300

kubectl() { "$KUBECTL" "$@"; }
# Without the run's lock (fd 8): containers outlive their command (conmon, aardvark-dns,
# the podman API service), and holding it they would lock the next run out for as long as
# a cluster kept with E2E_KEEP=1 lives.
kind() { timeout "${KIND_TIMEOUT:-$CREATE_TIMEOUT}" "$KIND" "$@" 8>&-; }
podman() { command podman "$@" 8>&-; }

# --- teardown -----------------------------------------------------------------------------

dump_diagnostics() {
  [[ -s $KUBECONFIG ]] || return 0
  mkdir -p "$DIAG"
  log "failure: dumping cluster state, pod logs and events to ${DIAG#"$ROOT"/}"
  timeout 60 "$KUBECTL" get nodes,pods,svc,endpoints,pvc,pv -A -o wide >"$DIAG/resources.txt" 2>&1 || true
  timeout 60 "$KUBECTL" describe pods -A >"$DIAG/pods-describe.txt" 2>&1 || true
  timeout 60 "$KUBECTL" get events -A --sort-by=.lastTimestamp >"$DIAG/events.txt" 2>&1 || true
  local ns pod
  while read -r ns pod; do
    [[ -n $pod ]] || continue
    timeout 30 "$KUBECTL" -n "$ns" logs "$pod" --all-containers --prefix --timestamps --tail=2000 \
      >"$DIAG/logs-$ns-$pod.txt" 2>&1 || true
    timeout 30 "$KUBECTL" -n "$ns" logs "$pod" --all-containers --prefix --timestamps --previous --tail=2000 \
      >"$DIAG/logs-$ns-$pod.previous.txt" 2>/dev/null || rm -f "$DIAG/logs-$ns-$pod.previous.txt"
  done < <(timeout 30 "$KUBECTL" get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name}{"\n"}{end}' 2>/dev/null || true)
  timeout 120 "$KIND" export logs "$DIAG/kind" --name "$CLUSTER" >/dev/null 2>&1 || true

  {
    echo "----- nodes, pods, services -----"
    cat "$DIAG/resources.txt"
    echo "----- events (last 60) -----"
    tail -n 60 "$DIAG/events.txt"
    local f
    for f in "$DIAG"/logs-*.txt; do
      [[ -f $f ]] || continue
      case $f in */logs-kube-system-*) continue ;; esac
      echo "----- ${f##*/} (last 80 lines) -----"
      tail -n 80 "$f"
    done
  } >&2
}

stop_port_forwards() {
  [[ -f $PORT_FORWARD_PIDS ]] || return 0
  local pid
  while read -r pid; do
    [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null || true
  done <"$PORT_FORWARD_PIDS"
}

delete_cluster() {
  if [[ -n $(KIND_TIMEOUT=60 kind get clusters 2>/dev/null | grep -x "$CLUSTER" || true) ]]; then
    KIND_TIMEOUT=180 kind delete cluster --name "$CLUSTER" >&2 || true
  fi
  # kind leaves its podman network behind; drop it once nothing uses it
  if podman network exists kind 2>/dev/null && [[ -z $(podman ps -aq --filter network=kind) ]]; then
    podman network rm kind >/dev/null 2>&1 || true
  fi
}

on_exit() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  ((rc == 0)) || dump_diagnostics
  [[ -n ${ROOTFS_PID:-} ]] && kill -- -"$ROOTFS_PID" 2>/dev/null
  stop_port_forwards
  if [[ ${E2E_KEEP:-0} == 1 ]]; then
    log "E2E_KEEP=1: cluster $CLUSTER kept (KUBECONFIG=$KUBECONFIG)"
  else
    step "delete cluster" delete_cluster
    step "scenario 9: teardown leaves nothing running" verify_teardown || rc=1
    rm -rf "$KUBECONFIG" "$WORK/urls.env" "$WORK/images"
  fi
  rm -f "$PORT_FORWARD_PIDS"
  if [[ -f $E2E_TIMINGS ]]; then
    log "timings:"
    cat "$E2E_TIMINGS" >&2
  fi
  [[ -f $WORK/scenarios.txt ]] && cat "$WORK/scenarios.txt" >&2
  log "total $((SECONDS)) s, exit $rc"
  exit "$rc"
}

# --- cluster ------------------------------------------------------------------------------

# kind's nodes find each other by container name (`kubeadm join` dials <cluster>-control-plane),
# which only netavark's aardvark-dns provides: prove it on a throwaway network first, rather
# than minutes later as a failed join.
check_podman_network() (
  local net=groupcast-e2e-netcheck backend
  local fix="e2e/toolchain.sh host installs netavark + aardvark-dns and selects netavark in a containers.conf drop-in"
  backend=$(podman_network_backend) || die "podman info failed or timed out"
  [[ $backend == netavark ]] ||
    die "podman's network backend is '$backend', not netavark: its networks resolve no container names and kind's worker cannot join. Fix: $fix"
  cleanup() {
    timeout 60 podman rm -f -t 0 "$net-a" "$net-b" >/dev/null 2>&1
    timeout 60 podman network rm -f "$net" >/dev/null 2>&1
    return 0
  }
  trap cleanup EXIT
  cleanup
  timeout 60 podman network create "$net" >/dev/null
  # the node image is at hand and has getent; the containers end by themselves if left behind
  local c
  for c in a b; do
    timeout 60 podman run -d --name "$net-$c" --network "$net" --entrypoint sleep "$NODE_IMAGE" 300 >/dev/null 8>&-
  done
  local deadline=$((SECONDS + 30))
  until timeout 10 podman exec "$net-b" getent hosts "$net-a" >/dev/null 2>&1; do
    ((SECONDS < deadline)) ||
      die "containers on a podman network do not resolve each other by name after 30 s (aardvark-dns): kind's worker would fail at kubeadm join. Is aardvark-dns installed (dpkg -s aardvark-dns) and running? Fix: $fix"
    sleep 1
  done
  log "podman: netavark, container names resolve ($(timeout 10 podman exec "$net-b" getent hosts "$net-a" | awk '{print $1}'))"
)

create_cluster() {
  delete_cluster # a cluster left by a killed run
  kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$E2E_DIR/kind-config.yaml" \
    --kubeconfig "$KUBECONFIG" --wait "${NODE_READY_TIMEOUT}s" >&2
  kubectl wait --for=condition=Ready nodes --all --timeout="${NODE_READY_TIMEOUT}s"
}

# What kindnetd would do: each node's CNI conflist gets the node's own pod CIDR, and every
# node routes the other nodes' pod CIDRs to them over the kind network.
fix_pod_network() {
  local deadline=$((SECONDS + 60)) nodes
  while :; do
    nodes=$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
    ! grep -qE '^[^ ]+  ' <<<"$nodes" && break
    ((SECONDS < deadline)) || die "nodes have no podCIDR after 60 s"
    sleep 1
  done
  local n cidr n2 cidr2 ip2
  while read -r n cidr _; do
    podman exec "$n" sed -i "s#\"subnet\": \"[0-9./]*\"#\"subnet\": \"$cidr\"#" /etc/cni/net.d/10-kindnet.conflist </dev/null
    while read -r n2 cidr2 ip2; do
      [[ $n2 == "$n" ]] || podman exec "$n" ip route replace "$cidr2" via "$ip2" </dev/null
    done <<<"$nodes"
  done <<<"$nodes"
  log "pod network: $(tr '\n' ';' <<<"$nodes")"
  offline_dns
  # pods started before the fix (CoreDNS) may hold addresses from the wrong subnet
  kubectl -n kube-system rollout restart deployment/coredns
  kubectl -n kube-system rollout status deployment/coredns --timeout="${SYSTEM_PODS_TIMEOUT}s"
  kubectl -n kube-system rollout status daemonset/kube-proxy --timeout="${SYSTEM_PODS_TIMEOUT}s"
}

# Nothing is upstream of CoreDNS offline: its `forward` to the node's resolvers (podman's
# aardvark-dns) only times out, so every name that misses cluster.local took seconds to fail
# (a pod's lookup walks all its search domains). Without `forward` such names fail at once,
# as they would against a reachable upstream.
offline_dns() {
  local corefile
  corefile=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
  grep -q 'forward \. /etc/resolv.conf' <<<"$corefile" || return 0
  corefile=$(sed '/^ *forward \. \/etc\/resolv.conf {/,/^ *}/d' <<<"$corefile")
  kubectl -n kube-system create configmap coredns --from-literal=Corefile="$corefile" \
    --dry-run=client -o yaml | kubectl -n kube-system apply -f - >/dev/null 2>&1
  ! kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}' | grep -q forward
}

# kind's usual local-path provisioner cannot be built offline; the node image's default
# StorageClass binds these hostPath volumes (WaitForFirstConsumer, pinned to their node).
# Enough for every claim of the run on one node (the control-plane keeps its NoSchedule
# taint): the single Redis, the six nodes of the Redis Cluster scenario, skaffold's Redis.
PVS_PER_NODE=10
create_volumes() {
  local n i
  for n in $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}'); do
    # like local-path-provisioner: writable by the non-root uid a chart runs Redis as
    podman exec "$n" bash -c "for i in \$(seq $PVS_PER_NODE); do mkdir -p /var/local-pv/pv\$i && chmod 0777 /var/local-pv/pv\$i; done" </dev/null
  done
  for n in $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}'); do
    for i in $(seq "$PVS_PER_NODE"); do
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: e2e-$n-$i
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: standard
  hostPath: {path: /var/local-pv/pv$i, type: Directory}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/hostname, operator: In, values: [$n]}
EOF
    done
  done | kubectl apply -f - >/dev/null
}

# --- groupcast -----------------------------------------------------------------------------

groupcast_version() {
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml"
}

load_images() {
  make -C "$ROOT" --no-print-directory image >"$LOGS/make-image.log" 2>&1 ||
    { tail -n 40 "$LOGS/make-image.log" >&2; die "make image failed (log: ${LOGS#"$ROOT"/}/make-image.log)"; }
  podman image exists "$IMAGE" || die "make image did not produce $IMAGE"
  podman image exists "$REDIS_IMAGE" || die "make image did not produce $REDIS_IMAGE"
  mkdir -p "$WORK/images"
  local img archive
  for img in "$IMAGE" "$REDIS_IMAGE"; do
    archive=$WORK/images/$(tr '/:' '__' <<<"$img").tar
    rm -f "$archive"
    podman save -q --format docker-archive -o "$archive" "$img"
    KIND_TIMEOUT=300 kind load image-archive "$archive" --name "$CLUSTER" >&2
    rm -f "$archive"
  done
}

install_chart() {
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # shellcheck disable=SC2086  # E2E_HELM_ARGS is a list of words
  timeout $((INSTALL_TIMEOUT + 30)) "$HELM" install "$RELEASE" "$CHART" -n "$NAMESPACE" \
    -f "$E2E_DIR/values-e2e.yaml" --set image.tag="$VERSION" ${E2E_HELM_ARGS:-} \
    --wait --timeout "${INSTALL_TIMEOUT}s" --hide-notes >&2 &
  local helm_pid=$! crashing
  # a pod that keeps crashing will not get Ready: say so now rather than after the timeout
  while kill -0 "$helm_pid" 2>/dev/null; do
    crashing=$(kubectl -n "$NAMESPACE" get pods -o jsonpath='{range .items[*]}{.metadata.name} {range .status.containerStatuses[*]}{.restartCount} {end}{"\n"}{end}' 2>/dev/null |
      awk '{for (i = 2; i <= NF; i++) if ($i >= 3) {print $1; break}}' | head -n1)
    if [[ -n $crashing ]]; then
      kill "$helm_pid" 2>/dev/null || true
      wait "$helm_pid" 2>/dev/null || true
      log "pod $crashing restarted 3 times during helm install; its last log lines:"
      kubectl -n "$NAMESPACE" logs "$crashing" --all-containers --previous --tail=15 >&2 || true
      return 1
    fi
    sleep 3
  done
  wait "$helm_pid"
  kubectl -n "$NAMESPACE" get pods,svc,pvc -o wide >&2
}

# NodePort Services of the e2e's own, beside the chart's: kind maps their node ports to
# loopback, so the scenarios reach "the Service" (any ready pod) as a client behind an
# Ingress would, including after a pod they were on is gone.
expose_services() {
  local component port node_port
  for component in http socket; do
    case $component in
      http) port=8000 node_port=$HTTP_NODE_PORT ;;
      socket) port=8001 node_port=$SOCKET_NODE_PORT ;;
    esac
    cat <<EOF
---
apiVersion: v1
kind: Service
metadata:
  name: e2e-$component
  namespace: $NAMESPACE
spec:
  type: NodePort
  selector:
    app.kubernetes.io/instance: $RELEASE
    app.kubernetes.io/component: $component
  ports:
    - {port: $port, targetPort: $port, nodePort: $node_port, protocol: TCP}
EOF
  done | kubectl apply -f - >/dev/null
  local cp=$CLUSTER-control-plane
  HTTP_URL=http://$(podman port "$cp" "$HTTP_NODE_PORT/tcp")
  WS_URL=ws://$(podman port "$cp" "$SOCKET_NODE_PORT/tcp")/ws
  [[ $HTTP_URL == http://127.0.0.1:* && $WS_URL == ws://127.0.0.1:* ]] || die "NodePorts not on loopback: $HTTP_URL $WS_URL"
  local deadline=$((SECONDS + 60))
  local socket_http=http://${WS_URL#ws://}
  until curl -sf --max-time 2 "$HTTP_URL/readyz" >/dev/null && curl -sf --max-time 2 "${socket_http%/ws}/readyz" >/dev/null; do
    ((SECONDS < deadline)) || die "NodePort Services not answering at $HTTP_URL / $WS_URL after 60 s"
    sleep 1
  done
  log "http at $HTTP_URL, socket at $WS_URL"
  printf 'HTTP_URL=%s\nWS_URL=%s\n' "$HTTP_URL" "$WS_URL" >"$WORK/urls.env"
}

helm_test() {
  # the chart deletes a test pod that passed; one that failed stays for its logs
  if ! timeout 240 "$HELM" test "$RELEASE" -n "$NAMESPACE" --timeout 180s --hide-notes >&2; then
    kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/component=test --tail=100 >&2 || true
    return 1
  fi
}

venv() {
  [[ -x $PYTHON ]] || make -C "$ROOT" --no-print-directory deps >&2
  "$PYTHON" -c 'import websockets, pytest, pytest_asyncio, pytest_timeout, yaml' ||
    die "the project's .venv lacks websockets/pytest-asyncio/pytest-timeout/pyyaml (make deps)"
}

scenarios() {
  source "$WORK/urls.env"
  E2E_KUBECTL=$KUBECTL E2E_HELM=$HELM E2E_NAMESPACE=$NAMESPACE E2E_RELEASE=$RELEASE \
    E2E_CHART=$CHART E2E_VALUES=$E2E_DIR/values-e2e.yaml E2E_IMAGE_TAG=$VERSION \
    E2E_HELM_ARGS=${E2E_HELM_ARGS:-} E2E_PORT_FORWARD_PIDS=$PORT_FORWARD_PIDS E2E_HTTP_URL=$HTTP_URL E2E_WS_URL=$WS_URL \
    E2E_REPORT=$WORK/scenarios.json E2E_DIAG=$DIAG \
    timeout 1800 "$PYTHON" -m pytest -c "$E2E_DIR/pytest.ini" "$E2E_DIR/tests" ${E2E_PYTEST_ARGS:-} >&2
}

# The dev loop as a developer runs it: `skaffold run -p kind,podman` builds with podman
# (hack/skaffold-build.sh: hack/image.sh, kind load) and deploys the chart into a second
# namespace; the chart's helm test proves a round trip there, then `skaffold delete`.
skaffold_run() (
  local sock=$WORK/podman.sock ns=$SKAFFOLD_NAMESPACE api_pid
  # skaffold inspects and tags the built image through a Docker API: podman's, on a socket of
  # our own (the service also ends by itself after 10 idle minutes, should this step be killed);
  # `command`: the binary itself, so that $! is its pid and the trap stops it, not a subshell
  rm -f "$sock"
  command podman system service --time=600 "unix://$sock" >"$LOGS/podman-api.log" 2>&1 8>&- &
  api_pid=$!
  # shellcheck disable=SC2064  # the pid and path are fixed now
  trap "kill $api_pid 2>/dev/null; wait $api_pid 2>/dev/null; rm -f '$sock'" EXIT
  local deadline=$((SECONDS + 30))
  until curl -sf --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "podman's API service did not answer on $sock within 30 s (log: ${LOGS#"$ROOT"/}/podman-api.log)"
    sleep 0.5
  done
  # skaffold's own `kind load docker-image` needs a Docker CLI: hack/skaffold-build.sh loads
  # the images instead. Nothing may phone home offline.
  printf '%s\n' 'global:' '  kind-disable-load: true' '  collect-metrics: false' '  update-check: false' \
    '  survey:' '    disable-prompt: true' >"$WORK/skaffold-config.yaml"
  local skaffold=(
    env "PATH=$(dirname "$KIND"):$(dirname "$HELM"):$KUBERNETES_BIN:$PATH" "DOCKER_HOST=unix://$sock"
    "KIND_CLUSTER=$CLUSTER" "KIND=$KIND"
    "$SKAFFOLD" --config "$WORK/skaffold-config.yaml"
  )
  local args=(-p 'kind,podman' --kube-context "kind-$CLUSTER" --namespace "$ns")
  # every run builds: a cached artifact would skip the script that loads it into this cluster
  (cd "$ROOT" && timeout 900 "${skaffold[@]}" run "${args[@]}" --cache-artifacts=false --status-check=true >&2)
  kubectl -n "$ns" get pods -o wide >&2
  if ! timeout 240 "$HELM" test "$RELEASE" -n "$ns" --timeout 180s --hide-notes >&2; then
    kubectl -n "$ns" logs -l app.kubernetes.io/component=test --tail=100 >&2 || true
    return 1
  fi
  (cd "$ROOT" && timeout 300 "${skaffold[@]}" delete "${args[@]}" >&2)
  kubectl delete namespace "$ns" --wait --timeout=180s >&2
)

# Scenario 9: after the cluster is deleted nothing of the run may be left.
verify_teardown() {
  local left=0
  if [[ -n $(KIND_TIMEOUT=60 kind get clusters 2>/dev/null) ]]; then
    log "kind clusters left: $(KIND_TIMEOUT=60 kind get clusters 2>/dev/null | tr '\n' ' ')"
    left=1
  fi
  if [[ -n $(podman ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER") ]]; then
    log "podman containers of $CLUSTER left: $(podman ps -a --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --format '{{.Names}}')"
    left=1
  fi
  if [[ -n $(podman ps -aq --filter "name=groupcast-e2e") ]]; then
    log "e2e build containers left: $(podman ps -a --filter name=groupcast-e2e --format '{{.Names}}')"
    left=1
  fi
  if [[ -f $PORT_FORWARD_PIDS ]]; then
    local pid
    while read -r pid; do
      if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        log "port-forward $pid still running"
        left=1
      fi
    done <"$PORT_FORWARD_PIDS"
  fi
  ((left == 0)) && log "teardown verified: no kind cluster, no cluster or build containers, no port-forwards"
  return "$left"
}

# --- main ---------------------------------------------------------------------------------

main() {
  mkdir -p "$WORK"
  exec 8>"$CACHE/.run.lock"
  flock -n 8 || die "another e2e run holds $CACHE/.run.lock"
  rm -rf "$DIAG" "$E2E_TIMINGS" "$KUBECONFIG" "$PORT_FORWARD_PIDS" "$WORK/scenarios.txt" "$WORK/scenarios.json"
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # first: debootstrap, podman and its network come from the host packages
  "$E2E_DIR/toolchain.sh" host
  # the Debian rootfs downloads while the Go builds compile (own process group: on_exit
  # stops all of it if the run ends first)
  setsid "$E2E_DIR/node-image.sh" rootfs >"$LOGS/rootfs.log" 2>&1 &
  ROOTFS_PID=$!
  step "tool chain (kind, kubectl, helm, skaffold)" "$E2E_DIR/toolchain.sh" tools
  HELM=$(helm_path)
  wait "$ROOTFS_PID" || { cat "$LOGS/rootfs.log" >&2; die "rootfs build failed"; }
  ROOTFS_PID=
  NODE_IMAGE=$(step "node image" "$E2E_DIR/node-image.sh")

  step "podman network (netavark, container-name DNS)" check_podman_network
  step "create cluster" create_cluster
  step "pod network (per-node subnets, routes)" fix_pod_network
  step "persistent volumes" create_volumes

  VERSION=$(groupcast_version)
  IMAGE=localhost/groupcast:$VERSION
  step "make image + kind load image-archive" load_images
  step "helm install --wait" install_chart
  step "e2e NodePort Services" expose_services
  step "helm test" helm_test
  step "python venv" venv
  step "scenarios (pytest e2e/tests)" scenarios
  step "skaffold run -p kind,podman, helm test, skaffold delete" skaffold_run
}

main "$@"; exit
