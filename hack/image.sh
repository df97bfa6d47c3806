#!/usr/bin/env bash
# Builds the groupcast image with podman, offline (no registry): `make image`.
#
#   hack/image.sh          base images (cached) + groupcast:<version> + groupcast-redis:7;
#                          prints the groupcast image's name (all progress goes to stderr)
#   hack/image.sh smoke    also run each role read-only against a loopback Redis (http
#                          behind http-front, as in the pod) and check /readyz, a
#                          publish/receive round trip, the front's JSON refusals and a
#                          SIGTERM exit
#
# Base images come from debootstrap and are cached by a hash of their inputs (a label on
# the image), so a second run only rebuilds the groupcast layers.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# DEBIAN_SUITE: pinned once, beside the e2e tool chain's versions
DEBIAN_SUITE=$(sed -n 's/^DEBIAN_SUITE=\([a-z]*\).*/\1/p' "$root/e2e/versions.env")
DEBIAN_IMAGE=localhost/debian:$DEBIAN_SUITE
PYTHON_IMAGE=localhost/groupcast-python:$DEBIAN_SUITE
REDIS_IMAGE=localhost/groupcast-redis:7
HASH_LABEL=org.groupcast.input-hash
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

cache=$root/.cache/image
log() { echo "image.sh: $*" >&2; }
die() { log "$*"; exit 1; }

host_packages() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [[ ${#need[@]} -eq 0 ]] && return
  [[ $(id -u) -eq 0 ]] || die "need root to install ${need[*]}"
  log "installing ${need[*]} from Debian"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# Root here lacks CAP_SYS_RESOURCE, so runc cannot raise podman's default ulimits and no
# container starts (shared/platform.md). Leave any existing configuration alone and add a
# drop-in only when no file sets both limits.
containers_conf() {
  local conf=/etc/containers/containers.conf dropin=/etc/containers/containers.conf.d/50-groupcast-ulimits.conf
  if cat "$conf" /etc/containers/containers.conf.d/*.conf 2>/dev/null | grep -q 'nproc='; then
    return
  fi
  [[ -f $conf ]] && target=$dropin || target=$conf
  mkdir -p "$(dirname "$target")"
  cat >"$target" <<'CONF'
# written by groupcast hack/image.sh: runc cannot raise limits without CAP_SYS_RESOURCE
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
  log "wrote $target"
}

debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [[ -n $uri ]] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

image_hash() { podman image inspect --format "{{ index .Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true; }
input_hash() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

debian_base() {
  local mirror key rootfs
  mirror=$(debian_mirror)
  key=$(input_hash "debootstrap minbase $DEBIAN_SUITE $mirror")
  [[ $(image_hash "$DEBIAN_IMAGE") == "$key" ]] && { log "$DEBIAN_IMAGE cached ($key)"; echo "$key"; return; }
  log "debootstrap $DEBIAN_SUITE from $mirror (about 2 minutes)"
  rootfs=$cache/rootfs-$key
  rm -rf "$rootfs"
  mkdir -p "$cache"
  nice -n 10 debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $cache/debootstrap.log"
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL $HASH_LABEL=$key" - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  echo "$key"
}

# Builds $2 from hack/image/$1 on the Debian base unless its inputs are unchanged.
# Every build uses the host's network: apt and pip in RUN steps cannot reach the mirror from
# podman's default bridge on netavark here (shared/platform.md).
# podman build, and once more without the layer cache when it fails: podman's storage can
# keep a cached step whose layer is gone ("checking if cached image exists from a previous
# build: getting top layer info: layer not known", seen in make e2e's skaffold step).
podman_build() {
  nice -n 10 podman build "$@" >&2 && return
  log "podman build failed; building once more without its layer cache"
  nice -n 10 podman build --no-cache "$@" >&2
}

derived_image() {
  local file=$root/hack/image/$1 tag=$2 base_key=$3 key
  key=$(input_hash "$base_key" "$(cat "$file")")
  [[ $(image_hash "$tag") == "$key" ]] && { log "$tag cached ($key)"; return; }
  log "building $tag"
  podman_build --pull=never --network host --build-arg "DEBIAN_BASE=$DEBIAN_IMAGE" \
    --label "$HASH_LABEL=$key" -f "$file" -t "$tag" "$root/hack/image"
}

groupcast_image() {
  local version
  version=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$root/pyproject.toml")
  log "building groupcast:$version on $PYTHON_IMAGE"
  podman_build --pull=never --network host \
    --build-arg "BASE_IMAGE=$PYTHON_IMAGE" \
    --secret "id=cacert,src=$CA_BUNDLE" \
    -t "groupcast:$version" -t "localhost/groupcast:$version" -f "$root/Dockerfile" "$root"
  IMAGE=localhost/groupcast:$version
}

# --- smoke: every role from the image, read-only, as in the chart ---

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
  local url=$1 name=$2
  for _ in $(seq 1 150); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]] && { log "$name ready: $url"; return; }
    podman container exists "$name" && [[ $(podman inspect -f '{{.State.Running}}' "$name") == true ]] \
      || { podman logs "$name" >&2 || true; die "$name exited"; }
    sleep 0.2
  done
  podman logs "$name" >&2 || true
  die "$name not ready at $url after 30 s"
}

smoke() {
  command -v redis-server >/dev/null || die "smoke needs redis-server on the host (hack/system-deps.sh)"
  local work redis_port http_port gunicorn_port socket_port worker_port secrets
  work=$(mktemp -d)
  redis_port=$(free_port) http_port=$(free_port) gunicorn_port=$(free_port) socket_port=$(free_port) worker_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
  # shellcheck disable=SC2064
  trap "podman rm -f -t 0 gc-smoke-http gc-smoke-front gc-smoke-socket gc-smoke-worker >/dev/null 2>&1 || true; kill \$(cat $work/redis.pid) 2>/dev/null || true; rm -rf $work" EXIT
  secrets=(
    -e "REDIS_URL=redis://127.0.0.1:$redis_port/0"
    -e "DJANGO_SECRET_KEY=smoke-$(head -c 32 /dev/urandom | base64 | tr -d '/+=')"
    -e "GROUPCAST_API_KEYS=smoke-$(head -c 16 /dev/urandom | base64 | tr -d '/+=')"
    -e "GROUPCAST_JWT_SECRET=smoke-$(head -c 32 /dev/urandom | base64 | tr -d '/+=')"
  )
  # As in the chart: read-only root, only /tmp writable, no capabilities.
  local sandbox=(podman run -d --network host --read-only --tmpfs /tmp:rw,size=64m --cap-drop ALL
                 --security-opt no-new-privileges)
  local run=("${sandbox[@]}" "${secrets[@]}")
  "${run[@]}" --name gc-smoke-http -e "GUNICORN_BIND=127.0.0.1:$gunicorn_port" "$IMAGE" http >/dev/null
  # The front as in the pod: no secrets, gunicorn on loopback behind it.
  "${sandbox[@]}" --name gc-smoke-front -e "GROUPCAST_FRONT_BIND=127.0.0.1:$http_port" \
    -e "GROUPCAST_FRONT_UPSTREAM=127.0.0.1:$gunicorn_port" "$IMAGE" http-front >/dev/null
  "${run[@]}" --name gc-smoke-socket -e "GROUPCAST_SOCKET_PORT=$socket_port" -e GROUPCAST_DRAIN_SECONDS=2 "$IMAGE" socket >/dev/null
  "${run[@]}" --name gc-smoke-worker -e "GROUPCAST_METRICS_PORT=$worker_port" "$IMAGE" worker >/dev/null
  wait_ready "http://127.0.0.1:$http_port/readyz" gc-smoke-front
  wait_ready "http://127.0.0.1:$socket_port/readyz" gc-smoke-socket
  wait_ready "http://127.0.0.1:$worker_port/readyz" gc-smoke-worker
  for port in "$http_port" "$socket_port" "$worker_port"; do
    # Not `curl | grep -q`: grep exiting early fails curl (SIGPIPE) under pipefail.
    [[ $(curl -sf "http://127.0.0.1:$port/metrics") == *"# TYPE"* ]] || die "no metrics on port $port"
  done
  log "metrics served by every role"
  local refused
  refused=$(curl -s "http://127.0.0.1:$http_port/$(head -c 20000 /dev/zero | tr '\0' a)")
  [[ $refused == *'"code": "uri_too_long"'* ]] || die "the front's 414 is not JSON: $refused"
  log "the front refuses a 20 kB URL with a JSON 414"
  podman run --rm --network host --read-only --tmpfs /tmp "${secrets[@]}" "$IMAGE" \
    groupcast_check --roundtrip --http-url "http://127.0.0.1:$http_port" --ws-url "ws://127.0.0.1:$socket_port/ws" >&2
  # SIGTERM reaches each server (PID 1) and it exits by itself well within a grace period.
  for name in gc-smoke-socket gc-smoke-front gc-smoke-http gc-smoke-worker; do
    local start=$SECONDS
    podman stop -t 20 "$name" >/dev/null
    local code
    code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
    log "$name stopped on SIGTERM in $((SECONDS - start)) s, exit code $code"
    (( SECONDS - start < 15 )) || die "$name ignored SIGTERM"
  done
  log "smoke passed: $IMAGE"
}

main() {
  host_packages
  containers_conf
  [[ -s $CA_BUNDLE ]] || die "no CA bundle at $CA_BUNDLE"
  local base_key
  base_key=$(debian_base)
  derived_image Containerfile.python "$PYTHON_IMAGE" "$base_key"
  derived_image Containerfile.redis "$REDIS_IMAGE" "$base_key"
  groupcast_image
  log "built $IMAGE and $REDIS_IMAGE"
  [[ ${1:-} == smoke ]] && smoke
  echo "$IMAGE"
}

main "$@"
