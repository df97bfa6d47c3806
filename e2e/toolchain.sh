#!/usr/bin/env bash
# Prepares the host and builds the pinned e2e tools: podman (configured for this kind of host),
# kind, the Kubernetes binaries (kubectl for the host; kubelet, kubeadm and the control plane
# for the node image) and skaffold. Everything is cached under .cache/e2e/ by version; a warm
# run takes seconds.
# Helm comes from hack/helm.sh (see helm_path in lib.sh).
#
#   e2e/toolchain.sh         host, then tools
#   e2e/toolchain.sh host    only the host: Debian packages, podman configuration, /lib/modules
#   e2e/toolchain.sh tools   only the Go-built tools (kind, Kubernetes, helm, skaffold)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# netavark + aardvark-dns: container-name DNS on podman networks, which kind's `kubeadm join`
# needs (--no-install-recommends would leave podman on CNI, which has none); netavark programs
# the bridge networks' NAT and port forwards with iptables.
HOST_PACKAGES=(podman runc netavark aardvark-dns iptables debootstrap libseccomp-dev pkg-config gcc libc6-dev prometheus)
NETWORK_DROPIN=/etc/containers/containers.conf.d/50-groupcast-e2e-network.conf

host_packages() {
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing from Debian: ${missing[*]}"
  timeout 600 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Root here lacks CAP_SYS_RESOURCE: runc cannot raise rlimits past the host's hard limits,
# so no podman container starts with podman's default ulimits (see shared/platform.md).
podman_config() {
  local conf=/etc/containers/containers.conf dropin=/etc/containers/containers.conf.d/50-e2e-ulimits.conf
  local want='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
  # already set, by us or anyone (hack/image.sh writes the same): leave every file alone
  if cat "$conf" /etc/containers/containers.conf.d/*.conf 2>/dev/null | grep -q 'nproc='; then
    return 0
  fi
  if [[ -f $conf ]]; then
    # someone else's file without the limits: add ours as a drop-in, leave theirs alone
    mkdir -p "$(dirname "$dropin")"
    printf '%s\n' "# written by groupcast e2e/toolchain.sh" "$want" >"$dropin"
    log "wrote $dropin"
  else
    mkdir -p /etc/containers
    printf '%s\n' "# written by groupcast e2e/toolchain.sh" "$want" >"$conf"
    log "wrote $conf"
  fi
}

# netavark, explicitly: podman keeps using CNI on a machine whose storage it already used
# with CNI, even once netavark is installed.
podman_network() {
  local was want='[network]
network_backend = "netavark"'
  was=$(podman_network_backend)
  if [[ $was != netavark ]]; then
    # containers and networks made on CNI cannot be torn down by netavark: remove our own
    # while CNI still can (kind recreates its network on netavark)
    local ours
    mapfile -t ours < <(podman ps -aq --filter 'name=^groupcast-e2e')
    ((${#ours[@]} == 0)) || timeout 180 podman rm -f -t 0 -v "${ours[@]}" >/dev/null
    if podman network exists kind && [[ -z $(podman ps -aq --filter network=kind) ]]; then
      podman network rm kind >/dev/null
    fi
    # CNI's bridges outlive their networks; an idle cni-podman0 would keep the subnet of
    # netavark's default network
    local br
    for br in $(ip -o link show type bridge | awk -F': ' '$2 ~ /^cni-podman/ {print $2}'); do
      [[ -n $(ip -o link show master "$br") ]] || ip link delete "$br"
    done
  fi
  if [[ $(cat "$NETWORK_DROPIN" 2>/dev/null) != *"$want"* ]]; then
    mkdir -p "$(dirname "$NETWORK_DROPIN")"
    printf '%s\n' "# written by groupcast e2e/toolchain.sh: kind needs container-name DNS" "$want" >"$NETWORK_DROPIN"
    log "wrote $NETWORK_DROPIN"
  fi
  local now
  now=$(podman_network_backend)
  [[ $now == netavark ]] || die "podman uses the '$now' network backend although $NETWORK_DROPIN selects netavark:" \
    "a containers.conf read after it overrides it (grep -r network_backend /etc/containers /usr/share/containers)"
  if [[ $was != netavark ]]; then
    log "podman network backend: $was -> netavark"
    local others
    others=$(podman ps -a --format '{{.Names}}' | tr '\n' ' ')
    [[ -z $others ]] || log "warning: containers created on $was must be recreated for netavark: $others(or \`podman system reset --force\`, which removes all containers and images)"
  fi
}

host_setup() {
  host_packages
  podman_config
  podman_network
  # kind's podman provider bind-mounts /lib/modules read-only; this host has none.
  mkdir -p /lib/modules
}

kind_build() {
  local dir=$CACHE/kind-$KIND_VERSION
  cached "$dir" && return 0
  local tmp
  tmp=$(mktemp -d "$CACHE/.kind.XXXXXX")
  CGO_ENABLED=0 GOBIN=$tmp "${NICE[@]}" go install -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  "$tmp/kind" version
  publish "$tmp" "$dir"
}

# Kubernetes from the module proxy: the module zip has no staging/ tree, so the ./staging
# replaces are swapped for the published k8s.io/* modules at the matching v0.x version.
kubernetes_build() {
  local dir=$CACHE/kubernetes-$KUBERNETES_VERSION
  cached "$dir" && return 0
  local src=$SRC/kubernetes-$KUBERNETES_VERSION tmp
  writable_copy "k8s.io/kubernetes@$KUBERNETES_VERSION" "$src"
  (
    cd "$src"
    rm -rf vendor go.work go.work.sum
    local args=() m
    for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' go.mod); do
      case $m in
        # not served by the module proxy and not needed by any cmd/ we build
        k8s.io/sample-cli-plugin | k8s.io/sample-controller) args+=("-dropreplace=$m" "-droprequire=$m") ;;
        *) args+=("-dropreplace=$m" "-require=$m@$KUBERNETES_STAGING_VERSION") ;;
      esac
    done
    ((${#args[@]} > 20)) || die "expected the ./staging replace block in k8s.io/kubernetes go.mod"
    go mod edit "${args[@]}"

    # version stamping as hack/lib/version.sh does; kubeadm's preflight compares these
    local minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    local date
    date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.info")
    local ldflags="-s -w" pkg
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
    done
    mkdir -p _out
    CGO_ENABLED=0 "${NICE[@]}" go build -ldflags "$ldflags" -o _out/ \
      ./cmd/kubelet ./cmd/kubeadm ./cmd/kubectl ./cmd/kube-apiserver \
      ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kube-proxy
    # pause comes from the same tree, as in kubernetes' build/pause
    "${NICE[@]}" gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o _out/pause build/pause/linux/pause.c
  )
  tmp=$(mktemp -d "$CACHE/.kubernetes.XXXXXX")
  mv "$src/_out" "$tmp/bin"
  "$tmp/bin/kubectl" version --client
  "$tmp/bin/kubeadm" version -o short
  publish "$tmp" "$dir"
  rm -rf "$src"
}

# skaffold's go.mod has replace directives (go install refuses): build inside a copy of it.
skaffold_build() {
  local dir=$CACHE/skaffold-$SKAFFOLD_VERSION tmp
  cached "$dir" && return 0
  tmp=$(mktemp -d "$CACHE/.skaffold.XXXXXX")
  build_in_module "github.com/GoogleContainerTools/skaffold/v2@$SKAFFOLD_VERSION" "$tmp" timetzdata \
    "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION" \
    ./cmd/skaffold
  "$tmp/skaffold" version
  publish "$tmp" "$dir"
}

tools() {
  step "kind $KIND_VERSION" with_lock kind kind_build
  step "kubernetes $KUBERNETES_VERSION binaries (kubectl + node)" with_lock kubernetes kubernetes_build
  step "skaffold $SKAFFOLD_VERSION" with_lock skaffold skaffold_build
  local helm
  helm=$(step "helm $HELM_VERSION" helm_path)
  log "kind: $KIND"
  log "skaffold: $SKAFFOLD"
  log "kubectl: $KUBECTL"
  log "helm: $helm"
}

main() {
  case ${1:-all} in
    host) step "host packages, podman config, /lib/modules" with_lock host host_setup ;;
    tools) tools ;;
    all)
      step "host packages, podman config, /lib/modules" with_lock host host_setup
      tools
      ;;
    *) die "usage: $0 [all|host|tools]" ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
