#!/usr/bin/env bash
# Installs the Debian packages the local stack and the tests need, when missing:
# redis-server (unless REDIS_URL is set), nginx (the http role's buffering front),
# Chromium for the demo-page test, Prometheus.
set -euo pipefail

need=()
if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null; then need+=(redis-server); fi
# nginx is in /usr/sbin, often not on a user's PATH; devstack looks there too.
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v chromium >/dev/null || need+=(chromium)
command -v prometheus >/dev/null || need+=(prometheus)
[[ ${#need[@]} -eq 0 ]] && exit 0

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "installing ${need[*]} from Debian" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
