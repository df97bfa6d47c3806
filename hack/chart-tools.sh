#!/usr/bin/env bash
# Prints the path of a pinned tool the chart tests use, installing it on first use:
#   hack/chart-tools.sh kustomize   built with `go install` (builds k8s/ overlays)
#   hack/chart-tools.sh checkov     from PyPI into its own venv (static security scan)
# Cached under .cache/tools/<tool>-<version>/; only the path goes to stdout.
set -euo pipefail

KUSTOMIZE_VERSION=v5.7.1
CHECKOV_VERSION=3.3.30

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/.cache/tools

locked() {  # locked DIR: one installer at a time per tool
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock 9
}

case ${1:-} in
  kustomize)
    dir=$tools/kustomize-$KUSTOMIZE_VERSION
    bin=$dir/kustomize
    if [[ ! -x $bin ]]; then
      locked "$dir"
      if [[ ! -x $bin ]]; then
        echo "building kustomize $KUSTOMIZE_VERSION with go install (about 40 s)" >&2
        tmp=$(mktemp -d "$dir/.gobin.XXXXXX")
        CGO_ENABLED=0 GOBIN="$tmp" nice -n 10 go install -trimpath -ldflags "-s -w" \
          "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
        mv "$tmp/kustomize" "$bin"
        rmdir "$tmp"
      fi
    fi
    ;;
  checkov)
    dir=$tools/checkov-$CHECKOV_VERSION
    bin=$dir/bin/checkov
    if [[ ! -x $bin ]]; then
      locked "$dir"
      if [[ ! -x $bin ]]; then
        echo "installing checkov $CHECKOV_VERSION from PyPI (about 2 minutes)" >&2
        python3 -m venv "$dir"
        nice -n 10 "$dir/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
      fi
    fi
    ;;
  *)
    echo "usage: $0 kustomize|checkov" >&2
    exit 2
    ;;
esac

echo "$bin"
