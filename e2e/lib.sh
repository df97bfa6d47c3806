# shellcheck shell=bash
# Shared by the e2e scripts: pinned versions, cache layout, logging and build helpers.
# Sourced, never run.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=e2e/versions.env
source "$E2E_DIR/versions.env"

# Every artifact lives under .cache/e2e/<component>-<version>/ so a second run reuses it.
CACHE=${E2E_CACHE:-$ROOT/.cache/e2e}
SRC=$CACHE/src
LOGS=${E2E_LOGS:-$CACHE/logs}
mkdir -p "$CACHE" "$SRC" "$LOGS"

# shellcheck disable=SC2034  # used by the scripts that source this file
KIND=$CACHE/kind-$KIND_VERSION/kind
# shellcheck disable=SC2034
SKAFFOLD=$CACHE/skaffold-$SKAFFOLD_VERSION/skaffold
KUBERNETES_BIN=$CACHE/kubernetes-$KUBERNETES_VERSION/bin
# shellcheck disable=SC2034
KUBECTL=$KUBERNETES_BIN/kubectl

export KIND_EXPERIMENTAL_PROVIDER=podman
export GOWORK=off
export GOTOOLCHAIN=local
# -mod=mod: the module zips we build inside have incomplete or stripped vendor/ trees.
export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
# Others run tests on the same two cores: every compiler and image build runs niced.
NICE=(nice -n 10)
# RUN steps on the host's network: on netavark's default bridge apt cannot reach the mirror here.
# shellcheck disable=SC2034
PODMAN_BUILD=("${NICE[@]}" podman build --network host)

log() { printf '%s [e2e] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# step NAME CMD...: run CMD in a subshell, log how long it took (the run's timing table).
step() {
  local name=$1 t0=$SECONDS rc=0 depth=${E2E_DEPTH:-0}
  shift
  log "==> $name"
  # A subshell with errexit switched back on: bash ignores `set -e` inside anything run as
  # `cmd || ...`, which would let a failed build carry on silently.
  set +e
  (
    set -e
    export E2E_DEPTH=$((depth + 1))
    "$@"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    log "<== $name: ok in $((SECONDS - t0)) s"
  else
    log "<== $name: FAILED (rc $rc) after $((SECONDS - t0)) s"
  fi
  # run.sh prints these as the timing table at the end
  if [[ -n ${E2E_TIMINGS:-} ]]; then
    printf '%*s%-*s %5d s  %s\n' $((depth * 2)) '' $((64 - depth * 2)) "$name" $((SECONDS - t0)) "$( ((rc == 0)) && echo ok || echo FAILED)" >>"$E2E_TIMINGS"
  fi
  return "$rc"
}

# cached DIR: true when DIR was completed by an earlier build (it holds a .done stamp).
cached() { [[ -f $1/.done ]]; }

# publish TMPDIR DIR: atomically turn a finished temporary build dir into the cache entry.
publish() {
  local tmp=$1 dir=$2
  touch "$tmp/.done"
  chmod 0755 "$tmp"
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# moddir MODULE@VERSION: download a Go module (verified by the checksum database) and print its dir.
moddir() {
  local json
  json=$(cd "$SRC" && GOFLAGS=-mod=mod go mod download -json "$1") || die "go mod download $1 failed"
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json"
}

# writable_copy MODULE@VERSION DEST: a writable copy of a module's tree to build inside.
writable_copy() {
  local from
  from=$(moddir "$1")
  [[ -d $from ]] || die "module $1 has no directory"
  rm -rf "$2"
  cp -r "$from" "$2"
  chmod -R u+w "$2"
}

# build_in_module MODULE@VERSION OUT TAGS LDFLAGS PKG...: `go build` PKGs (CGO off) into the
# directory OUT, inside a writable copy of a module whose go.mod `go install` refuses
# (replace or exclude directives).
build_in_module() {
  local module=$1 out=$2 tags=$3 ldflags=$4 src
  shift 4
  src=$SRC/$(basename "$out")
  writable_copy "$module" "$src"
  # an incomplete vendor/ must not stand in for the module proxy
  rm -rf "$src/vendor"
  (cd "$src" && CGO_ENABLED=0 "${NICE[@]}" go build -tags "$tags" -ldflags "$ldflags" -o "$out/" "$@")
  rm -rf "$src"
}

# with_lock NAME CMD...: one build of NAME at a time (two e2e runs may start together).
with_lock() {
  local name=$1
  shift
  (
    exec 9>"$CACHE/.$name.lock"
    flock -w 3600 9 || die "timed out waiting for the $name lock"
    "$@"
  )
}

# Debian mirror for debootstrap: the one the host's apt already uses (override: E2E_DEBIAN_MIRROR).
debian_mirror() {
  if [[ -n ${E2E_DEBIAN_MIRROR:-} ]]; then
    echo "$E2E_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  if [[ -z $uri ]]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  fi
  [[ -n $uri ]] || die "no Debian mirror in the apt sources; set E2E_DEBIAN_MIRROR"
  echo "$uri"
}

# helm_path: the pinned helm ($HELM_VERSION), built and cached by hack/helm.sh.
helm_path() { "$ROOT/hack/helm.sh"; }

# podman_network_backend: netavark or cni (bounded: a wedged podman must not hang the run).
podman_network_backend() { timeout 60 podman info --format '{{.Host.NetworkBackend}}'; }
