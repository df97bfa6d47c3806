#!/usr/bin/env bash
# Prints the path of a pinned helm binary, building it with `go install` on first use.
# Cached in .cache/tools/helm-<version>/helm; callers do `HELM=$(hack/helm.sh)`.
# Only the path goes to stdout; build progress goes to stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# HELM_VERSION: one pin for the chart tests and the e2e run
# shellcheck source=e2e/versions.env
source "$root/e2e/versions.env"
# Kubernetes minor of helm's client-go (v0.35.1), stamped as helm's Makefile does; without it
# `helm template` assumes Kubernetes v1.20 and fails charts with a kubeVersion constraint.
K8S_MAJOR=1
K8S_MINOR=35

dir="$root/.cache/tools/helm-$HELM_VERSION"
bin="$dir/helm"

if [[ ! -x $bin ]]; then
  command -v go >/dev/null || { echo "hack/helm.sh: go is required to build helm $HELM_VERSION" >&2; exit 1; }
  mkdir -p "$dir"
  # One build at a time: the chart tests and the e2e script may ask concurrently.
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -x $bin ]]; then
    echo "building helm $HELM_VERSION with go install (about 90 s on 2 cores)" >&2
    tmp=$(mktemp -d "$dir/.gobin.XXXXXX")
    # The version ldflag makes `helm version` report v3.20.2 instead of "v3.20+unreleased".
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in pkg/chartutil pkg/lint/rules; do
      ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=$K8S_MAJOR -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$K8S_MINOR"
    done
    CGO_ENABLED=0 GOBIN="$tmp" nice -n 10 go install -trimpath -ldflags "$ldflags" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mv "$tmp/helm" "$bin"
    rmdir "$tmp"
  fi
fi

echo "$bin"
