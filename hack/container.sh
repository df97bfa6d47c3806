#!/usr/bin/env bash
# The container image with whichever engine is present (`make image`, `make push`):
#
#   hack/container.sh build          build groupcast:<version>; prints the built image's name
#   hack/container.sh push IMAGE     build it, tag it IMAGE (<registry>/<path>:<tag>), push it
#                                    (PUSH_TLS_VERIFY=false: to a plain-HTTP registry, podman)
#
# podman (preferred when present): hack/image.sh, on a Debian base it bootstraps itself, so it
# builds offline. docker: the Dockerfile as is, on its public python base (needs that
# registry). CONTAINER_ENGINE=podman|docker chooses; with neither installed, hack/image.sh
# installs podman from Debian. A push is of this machine's architecture; the release
# workflow (.github/workflows/release.yml) pushes linux/amd64 and linux/arm64.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "container.sh: $*" >&2; }
die() { log "$*"; exit 1; }

engine() {
  case ${CONTAINER_ENGINE:-} in
    podman|docker) echo "$CONTAINER_ENGINE"; return ;;
    "") ;;
    *) die "CONTAINER_ENGINE must be podman or docker, got '$CONTAINER_ENGINE'" ;;
  esac
  if command -v podman >/dev/null; then echo podman
  elif command -v docker >/dev/null; then echo docker
  else echo podman  # hack/image.sh installs it
  fi
}

version() {
  python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
    "$root/pyproject.toml"
}

build() {
  local engine=$1 version
  if [[ $engine == podman ]]; then
    "$root/hack/image.sh"
    return
  fi
  version=$(version)
  log "building groupcast:$version with docker (base: the Dockerfile's BASE_IMAGE)"
  local secret=()
  # behind a TLS-inspecting proxy the host's CA bundle must reach pip and uv (never a layer)
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] && secret=(--secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt)
  DOCKER_BUILDKIT=1 docker build "${secret[@]}" -t "groupcast:$version" -t "localhost/groupcast:$version" \
    -f "$root/Dockerfile" "$root" >&2
  echo "localhost/groupcast:$version"
}

push() {
  local engine=$1 image=${2:-} built
  [[ -n $image ]] || die "usage: make push IMAGE=<registry>/groupcast:<tag>  (e.g. ghcr.io/acme/groupcast:0.1.0)"
  # A name without a registry would go to Docker Hub's library/, which is never what is meant.
  [[ $image == */*:* && $image != *[[:space:]]* ]] \
    || die "IMAGE must be <registry>/<path>:<tag>, e.g. ghcr.io/acme/groupcast:0.1.0; got '$image'"
  built=$(build "$engine")
  log "tagging $built as $image"
  "$engine" tag "$built" "$image"
  log "pushing $image (log in first: $engine login <registry>)"
  local flags=()
  # a plain-HTTP registry on the machine or cluster (kind's local registry, say); docker
  # takes that from its daemon's insecure-registries instead
  if [[ ${PUSH_TLS_VERIFY:-true} == false ]]; then
    [[ $engine == podman ]] && flags=(--tls-verify=false)
  fi
  "$engine" push "${flags[@]}" "$image" >&2
  log "pushed $image: install with --set image.repository=${image%:*} --set image.tag=${image##*:}"
  echo "$image"
}

case ${1:-} in
  build) build "$(engine)" ;;
  push) push "$(engine)" "${2:-}" ;;
  *) die "usage: $0 build | push IMAGE" ;;
esac
