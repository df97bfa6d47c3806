#!/usr/bin/env bash
# Prints the path of a pinned tool the chart tests use, installing it on first use:
#   hack/chart-tools.sh kustomize   built with `go install` (builds k8s/ overlays)
#   hack/chart-tools.sh checkov     from PyPI into its own venv (static security scan)
#   hack/chart-tools.sh ct          chart-testing (`ct lint`), built with `go build`, beside a
#                                   venv with the yamllint and yamale it runs, and its etc/
#                                   (lintconf.yaml, chart_schema.yaml); prints ct's path
# Cached under .cache/tools/<tool>-<version>/; only the path goes to stdout.
set -euo pipefail

KUSTOMIZE_VERSION=v5.7.1
CHECKOV_VERSION=3.3.30
CT_VERSION=v3.14.0
# the versions chart-testing's own image installs (yamale) or a current one (yamllint)
YAMLLINT_VERSION=1.38.0
YAMALE_VERSION=6.0.0

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
  ct)
    dir=$tools/ct-$CT_VERSION
    bin=$dir/ct
    if [[ ! -x $bin ]]; then
      locked "$dir"
      if [[ ! -x $bin ]]; then
        echo "building chart-testing $CT_VERSION with go build, yamllint and yamale from PyPI (about a minute)" >&2
        # Not `go install ...@version`: it asks the module proxy for the module's version list
        # (to report deprecation), which the proxy refuses for this module; downloading the
        # pinned version and building inside a copy of it needs only that version.
        work=$(mktemp -d "$dir/.build.XXXXXX")
        (cd "$work" && go mod init ctbuild >/dev/null 2>&1)
        src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/helm/chart-testing/v3@$CT_VERSION" \
              | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
        [[ -d $src ]] || { echo "go mod download github.com/helm/chart-testing/v3@$CT_VERSION failed" >&2; exit 1; }
        cp -r "$src" "$work/src"
        chmod -R u+w "$work/src"
        python3 -m venv "$dir/venv"
        nice -n 10 "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
          "yamllint==$YAMLLINT_VERSION" "yamale==$YAMALE_VERSION" >&2
        rm -rf "$dir/etc"
        cp -r "$work/src/etc" "$dir/etc"
        (cd "$work/src" && CGO_ENABLED=0 nice -n 10 go build -trimpath \
          -ldflags "-s -w -X github.com/helm/chart-testing/v3/ct/cmd.Version=$CT_VERSION" \
          -o "$work/ct" ./ct) >&2
        mv "$work/ct" "$bin"
        rm -rf "$work"
      fi
    fi
    ;;
  *)
    echo "usage: $0 kustomize|checkov|ct" >&2
    exit 2
    ;;
esac

echo "$bin"
