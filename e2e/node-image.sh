#!/usr/bin/env bash
# Builds the kind node image offline from pinned sources: a debootstrap'ed Debian rootfs laid out
# as kind v0.30.0's images/base, Kubernetes/etcd/containerd/runc/crictl/CNI/coredns/pause built
# with Go from the module proxy, the control-plane images (tagged as `kubeadm config images list`
# names them) imported into the node's containerd the way kind's pkg/build/nodeimage does.
#
#   e2e/node-image.sh          build (or reuse) and print the node image name
#   e2e/node-image.sh rootfs   only the Debian rootfs (run.sh starts it early, beside the Go builds)
#   e2e/node-image.sh parts    only the Go-built node parts (etcd, containerd, runc, ...)
#   e2e/node-image.sh name     print the image name the current inputs produce
#
# Parts are cached under .cache/e2e/<component>-<version>/; the image is tagged by a hash of
# every input, so a warm run only checks that it exists.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGES=$E2E_DIR/images
PARTS=$CACHE/node-parts-$KUBERNETES_VERSION
ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,bash,ca-certificates,curl,jq,procps
ROOTFS_DIR=$CACHE/rootfs-$DEBIAN_SUITE-$(printf '%s' "$ROOTFS_PACKAGES" | sha256sum | cut -c1-8)

node_image_name() {
  local key
  key=$(cat "$E2E_DIR/versions.env" "$E2E_DIR/node-image.sh" "$IMAGES"/* | sha256sum | cut -c1-12)
  echo "localhost/groupcast-e2e-node:$KUBERNETES_VERSION-$key"
}
NODE_IMAGE=$(node_image_name)
BASE_IMAGE=localhost/groupcast-e2e-debian:$DEBIAN_SUITE-$(basename "$ROOTFS_DIR" | sed 's/.*-//')

# --- Debian rootfs (the base image for the node and for kube-proxy) -------------------------

rootfs_build() {
  cached "$ROOTFS_DIR" && return 0
  command -v debootstrap >/dev/null || die "debootstrap is missing: e2e/toolchain.sh host installs the host packages"
  local tmp mirror
  mirror=$(debian_mirror)
  tmp=$(mktemp -d "$CACHE/.rootfs.XXXXXX")
  log "debootstrap $DEBIAN_SUITE from the host's apt mirror"
  "${NICE[@]}" timeout 1200 debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" \
    "$DEBIAN_SUITE" "$tmp/rootfs" "$mirror" >"$LOGS/debootstrap.log" 2>&1 ||
    { tail -n 30 "$LOGS/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
  rm -rf "$tmp/rootfs"
  publish "$tmp" "$ROOTFS_DIR"
}

base_image() {
  podman image exists "$BASE_IMAGE" && return 0
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$ROOTFS_DIR/rootfs.tar" "$BASE_IMAGE" >/dev/null
}

# --- Go-built node parts ---------------------------------------------------------------------

# etcd's server and etcdctl modules carry replace directives, so `go install` refuses them;
# a throwaway wrapper module that requires them builds the same main packages.
etcd_build() {
  local dir=$PARTS/etcd-$ETCD_VERSION
  cached "$dir" && return 0
  local w=$SRC/etcd-wrapper-$ETCD_VERSION tmp m
  rm -rf "$w" && mkdir -p "$w"
  (
    cd "$w"
    go mod init e2e.local/etcdwrapper >/dev/null 2>&1
    printf '%s\n' '//go:build tools' '' 'package tools' '' 'import (' \
      '	_ "go.etcd.io/etcd/etcdctl/v3"' '	_ "go.etcd.io/etcd/server/v3"' ')' >tools.go
    for m in server/v3 etcdctl/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -require="go.etcd.io/etcd/$m@v$ETCD_VERSION"
    done
    go mod tidy
    CGO_ENABLED=0 "${NICE[@]}" go build -ldflags "-s -w" -o _out/ go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3
    mv _out/server _out/etcd
    _out/etcd --version | grep -q "etcd Version: $ETCD_VERSION"
  )
  tmp=$(mktemp -d "$CACHE/.etcd.XXXXXX")
  mv "$w/_out/etcd" "$w/_out/etcdctl" "$tmp/"
  publish "$tmp" "$dir"
  rm -rf "$w"
}

# containerd's go.mod has exclude directives (go install refuses) and an incomplete vendor/.
containerd_build() {
  local dir=$PARTS/containerd-$CONTAINERD_VERSION tmp
  cached "$dir" && return 0
  tmp=$(mktemp -d "$CACHE/.containerd.XXXXXX")
  build_in_module "github.com/containerd/containerd/v2@$CONTAINERD_VERSION" "$tmp" \
    "no_btrfs no_devmapper no_zfs no_aufs urfave_cli_no_docs" \
    "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2
  "$tmp/containerd" --version
  publish "$tmp" "$dir"
}

# go_install DIR CGO TAGS LDFLAGS PKG@VERSION...: a plain `go install` into a cache dir.
go_install() {
  local dir=$1 cgo=$2 tags=$3 ldflags=$4
  shift 4
  cached "$dir" && return 0
  local tmp
  tmp=$(mktemp -d "$CACHE/.goinstall.XXXXXX")
  (cd "$SRC" && CGO_ENABLED=$cgo GOBIN=$tmp "${NICE[@]}" go install -tags "$tags" -ldflags "$ldflags" "$@")
  publish "$tmp" "$dir"
}

parts_build() {
  # runc needs cgo + libseccomp (from Debian); it runs against the node's libseccomp2
  step "runc $RUNC_VERSION" go_install "$PARTS/runc-$RUNC_VERSION" 1 "seccomp urfave_cli_no_docs" \
    "-X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION"
  step "CNI plugins $CNI_PLUGINS_VERSION" go_install "$PARTS/cni-plugins-$CNI_PLUGINS_VERSION" 0 "" "-s -w" \
    "github.com/containernetworking/plugins/plugins/main/ptp@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS_VERSION"
  step "crictl $CRICTL_VERSION" go_install "$PARTS/crictl-$CRICTL_VERSION" 0 "" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  step "etcd $ETCD_VERSION" etcd_build
  step "containerd $CONTAINERD_VERSION" containerd_build
  step "coredns $COREDNS_VERSION" go_install "$PARTS/coredns-$COREDNS_VERSION" 0 "" "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

# --- images -------------------------------------------------------------------------------

# control_plane_images ARCHIVE: build the images kubeadm v1.34 asks for, save them to ARCHIVE.
control_plane_images() {
  local archive=$1 ctx
  ctx=$(mktemp -d "$CACHE/.cpctx.XXXXXX")
  local c
  local tags=()
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    cp "$KUBERNETES_BIN/$c" "$ctx/"
    "${PODMAN_BUILD[@]}" -q --build-arg COMPONENT="$c" -f "$IMAGES/Containerfile.control-plane" \
      -t "registry.k8s.io/$c:$KUBERNETES_VERSION" "$ctx" >/dev/null
    tags+=("registry.k8s.io/$c:$KUBERNETES_VERSION")
  done
  cp "$KUBERNETES_BIN/kube-proxy" "$ctx/"
  "${PODMAN_BUILD[@]}" -q --build-arg BASE_IMAGE="$BASE_IMAGE" -f "$IMAGES/Containerfile.kube-proxy" \
    -t "registry.k8s.io/kube-proxy:$KUBERNETES_VERSION" "$ctx" >/dev/null
  tags+=("registry.k8s.io/kube-proxy:$KUBERNETES_VERSION")
  cp "$PARTS/etcd-$ETCD_VERSION"/etcd* "$ctx/"
  "${PODMAN_BUILD[@]}" -q -f "$IMAGES/Containerfile.etcd" -t "registry.k8s.io/etcd:$ETCD_VERSION-0" "$ctx" >/dev/null
  tags+=("registry.k8s.io/etcd:$ETCD_VERSION-0")
  cp "$PARTS/coredns-$COREDNS_VERSION/coredns" "$ctx/"
  "${PODMAN_BUILD[@]}" -q -f "$IMAGES/Containerfile.coredns" -t "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$ctx" >/dev/null
  tags+=("registry.k8s.io/coredns/coredns:$COREDNS_VERSION")
  cp "$KUBERNETES_BIN/pause" "$ctx/"
  "${PODMAN_BUILD[@]}" -q -f "$IMAGES/Containerfile.pause" -t "registry.k8s.io/pause:$PAUSE_VERSION" "$ctx" >/dev/null
  tags+=("registry.k8s.io/pause:$PAUSE_VERSION")
  rm -rf "$ctx"

  # every image kubeadm will ask for must be among them
  local want
  for want in $("$KUBERNETES_BIN/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null); do
    printf '%s\n' "${tags[@]}" | grep -qx "$want" || die "kubeadm wants $want, which was not built"
  done
  podman save -m --format docker-archive -o "$archive" "${tags[@]}" >/dev/null
  podman rmi "${tags[@]}" >/dev/null
}

# overlay DIR: kind's images/base/files plus our binaries and configs, with the base
# Dockerfile's modes (scripts 0755, everything else 0644).
node_overlay() {
  local o=$1 kind_src
  kind_src=$(moddir "sigs.k8s.io/kind@$KIND_VERSION")/images/base/files
  [[ -d $kind_src ]] || die "kind $KIND_VERSION module has no images/base/files"
  mkdir -p "$o"
  cp -r "$kind_src"/. "$o/"
  chmod -R u+w "$o"
  find "$o" -type d -exec chmod 0755 {} +
  find "$o" -type f -exec chmod 0644 {} +
  chmod 0755 "$o"/usr/local/bin/* "$o"/kind/bin/*
  rm -rf "$o/LICENSES"

  # where kind's node image builder puts the Kubernetes binaries (kubelet.service wants /usr/bin)
  install -D -m 0755 -t "$o/usr/bin" "$KUBERNETES_BIN"/{kubelet,kubeadm,kubectl}
  install -D -m 0755 -t "$o/usr/local/bin" \
    "$PARTS/containerd-$CONTAINERD_VERSION"/{containerd,ctr,containerd-shim-runc-v2} \
    "$PARTS/crictl-$CRICTL_VERSION/crictl"
  install -D -m 0755 "$PARTS/runc-$RUNC_VERSION/runc" "$o/usr/local/sbin/runc"
  install -D -m 0755 -t "$o/opt/cni/bin" "$PARTS/cni-plugins-$CNI_PLUGINS_VERSION"/*
  # kindnetd cannot be built offline: a static ptp conflist (run.sh fixes subnets per node)
  install -D -m 0644 "$IMAGES/10-kindnet.conflist" "$o/etc/cni/net.d/10-kindnet.conflist"
  install -D -m 0644 "$IMAGES/default-storage.yaml" "$o/kind/manifests/default-storage.yaml"
  printf '%s' "$KUBERNETES_VERSION" >"$o/kind/version"
}

node_image_build() (
  podman image exists "$NODE_IMAGE" && exit 0
  stage=localhost/groupcast-e2e-node-stage:build
  builder=groupcast-e2e-nodebuild-$$
  work=$(mktemp -d "$CACHE/.nodeimage.XXXXXX")
  cleanup() {
    podman rm -f -v "$builder" >/dev/null 2>&1 || true
    podman rmi -f "$stage" >/dev/null 2>&1 || true
    rm -rf "$work"
  }
  trap cleanup EXIT

  step "control-plane images" control_plane_images "$work/images.tar"
  node_overlay "$work/ctx/overlay"
  cp "$IMAGES/Containerfile.node" "$work/ctx/"
  step "node rootfs image" "${PODMAN_BUILD[@]}" -q --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg PAUSE_VERSION="$PAUSE_VERSION" -f "$work/ctx/Containerfile.node" -t "$stage" "$work/ctx"

  # As kind's nodeimage builder: run the image with containerd up, import, commit.
  # no network: the import only talks to containerd's socket
  podman run -d --privileged --network none --name "$builder" --entrypoint sleep "$stage" infinity >/dev/null
  podman exec "$builder" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  podman exec "$builder" bash -c 'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /tmp/containerd.log; exit 1'
  step "import control-plane images into the node's containerd" \
    timeout 300 podman exec -i "$builder" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - \
    <"$work/images.tar" >"$LOGS/ctr-import.log"
  podman exec "$builder" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  # `sleep` is PID 1 here and reaps nobody: a stopped containerd stays as a zombie
  podman exec "$builder" bash -c 'pkill containerd; for i in $(seq 1 20); do ps -C containerd -o stat= | grep -qv "^Z" || exit 0; sleep 0.5; done; exit 1'
  podman exec "$builder" rm -rf /tmp/containerd.log
  step "commit $NODE_IMAGE" podman commit -q \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'CMD []' \
    --change 'ENV container=docker' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    "$builder" "$NODE_IMAGE" >/dev/null
)

# old node images (other versions or inputs) are only disk: drop them
prune_old_node_images() {
  local img
  for img in $(podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/groupcast-e2e-node:' || true); do
    [[ $img == "$NODE_IMAGE" ]] || podman rmi "$img" >/dev/null 2>&1 || true
  done
}

main() {
  # stdout carries only the image name; all progress goes to stderr
  exec 3>&1 1>&2
  case ${1:-all} in
    rootfs)
      step "debian $DEBIAN_SUITE rootfs" with_lock rootfs rootfs_build
      ;;
    parts)
      step "node parts" with_lock parts parts_build
      ;;
    all)
      if podman image exists "$NODE_IMAGE"; then
        log "node image $NODE_IMAGE is cached"
        echo "$NODE_IMAGE" >&3
        return 0
      fi
      [[ -x $KUBECTL ]] || "$E2E_DIR/toolchain.sh"
      step "debian $DEBIAN_SUITE rootfs" with_lock rootfs rootfs_build
      step "node parts" with_lock parts parts_build
      step "base image" with_lock base-image base_image
      step "node image" with_lock node-image node_image_build
      prune_old_node_images
      echo "$NODE_IMAGE" >&3
      ;;
    name) echo "$NODE_IMAGE" >&3 ;;
    *) die "usage: $0 [all|rootfs|parts|name]" ;;
  esac
}

main "$@"
