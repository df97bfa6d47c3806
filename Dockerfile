# groupcast: one image, three roles (docker-entrypoint.sh: http + http-front | socket | worker).
#
#   docker build -t groupcast .                      # public base, online
#   hack/image.sh                                    # podman, offline Debian base (make image)
#
# Builder and runtime start FROM the same base, so the venv's interpreter path
# (/usr/local/bin/python3 on python:*-slim, /usr/bin/python3 on a Debian base) exists in both.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    UV_SYSTEM_CERTS=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# An optional build secret `cacert` (e.g. the host's CA bundle behind a TLS-inspecting proxy)
# is trusted by pip and uv for this step only; it never lands in a layer.
# uv's version is pinned once, as `required-version` in pyproject.toml. Copied, not
# bind-mounted: podman (buildah) keys its layer cache on a RUN's text, not on the files it
# mounts, so a changed lock would reuse the venv built from the old one.
WORKDIR /src
COPY pyproject.toml uv.lock /src/
RUN --mount=type=secret,id=cacert \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert SSL_CERT_FILE=/run/secrets/cacert; fi; \
    uv_version="$(sed -n 's/^required-version = "==\(.*\)"/\1/p' /src/pyproject.toml)"; \
    python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==${uv_version:?no required-version in pyproject.toml}"
# Runtime dependencies only, exactly as locked; the project itself is not a package.
RUN --mount=type=secret,id=cacert \
    --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/cacert ]; then export SSL_CERT_FILE=/run/secrets/cacert; fi; \
    UV_PYTHON="$(command -v python3)" /opt/uv/bin/uv sync --frozen --no-default-groups --no-install-project
COPY service /app/service
RUN /opt/venv/bin/python -m compileall -q /app/service

FROM ${BASE_IMAGE} AS runtime
# nginx: the http role's buffering front (http-front). Debian's package; its service is
# never started here, and it runs as the image's user with every path under /tmp.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*
# HOME=/tmp: the root filesystem is read-only in Kubernetes; /tmp is an emptyDir there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DJANGO_SETTINGS_MODULE=service.settings
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /app
USER 10001:10001
# http (through http-front) and socket serve /metrics on their own port; worker on
# GROUPCAST_METRICS_PORT.
EXPOSE 8000 8001 9102
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["http"]
