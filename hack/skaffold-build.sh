#!/usr/bin/env bash
# skaffold's custom build for the `podman` profile (skaffold.yaml): no Docker engine, no registry.
# hack/image.sh builds the images with podman and this tags groupcast as skaffold asks ($IMAGE).
# With KIND_CLUSTER set it also loads the images into that kind cluster, under the name skaffold
# deploys for an image it did not push (<name>:<image id>): skaffold's own loading runs
# `kind load docker-image`, which needs a Docker CLI, so the profile is run with kind-disable-load.
# Redis (localhost/groupcast-redis:7, built by hack/image.sh too) goes along for the profile's values.
#
# Environment: IMAGE and PUSH_IMAGE (set by skaffold), KIND_CLUSTER, KIND (default: kind on PATH).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_IMAGE=localhost/groupcast-redis:7
log() { echo "skaffold-build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

: "${IMAGE:?is set by skaffold (custom build)}"
[[ ${PUSH_IMAGE:-false} == false ]] || die "there is no registry to push $IMAGE to: build with build.local.push: false"

# The name as Docker (and so skaffold, through podman's Docker API, and the kubelet) spells it:
# a name without a registry is on docker.io.
docker_ref() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then
    ref=docker.io/library/$ref
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    ref=docker.io/$ref
  fi
  echo "$ref"
}

built=$("$root/hack/image.sh")
podman tag "$built" "$(docker_ref "$IMAGE")"
log "tagged $built as $IMAGE"

if [[ -z ${KIND_CLUSTER:-} ]]; then
  log "KIND_CLUSTER is not set: the images stay in podman's storage"
  exit 0
fi
# skaffold deploys <name>:<image id> for an image built locally (it tags it so after this script)
id=$(podman image inspect --format '{{.Id}}' "$built")
id=${id#sha256:}
deployed=$(docker_ref "${IMAGE%:*}:$id")
podman tag "$built" "$deployed"
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT
podman save -q -m --format docker-archive -o "$archive" "$deployed" "$REDIS_IMAGE"
timeout 300 "${KIND:-kind}" load image-archive "$archive" --name "$KIND_CLUSTER" >&2
log "loaded $deployed and $REDIS_IMAGE into kind cluster $KIND_CLUSTER"
