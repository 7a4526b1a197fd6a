# syntax=docker/dockerfile:1
#
# strangler container image (GitHub issue 11).
#
#   docker build -t strangler .                      # the proxy (default, last stage)
#   docker build --target demo -t strangler-demo .   # monolith + extracted services + proxy
#
#   docker run --rm -p 8080:8080 -p 9901:9901 \
#     -e STRANGLER_ADMIN_TOKEN=... -v "$PWD/routes:/etc/strangler:ro" strangler
#
# The builder turns the project and its dependencies into wheels (strangler's own with its data
# plane compiled by mypyc, setup.py); the runtime installs those wheels only, offline
# (--no-index), so no compiler, build tool or source tree reaches it.
# Mount the config as a directory (not a single file): the proxy watches the file and reloads
# it, and a Kubernetes ConfigMap volume updates by swapping a symlink in that directory.

FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# A C compiler for mypyc, in this stage only. Debian's security updates move the exact
# versions, so they are not pinned; the compiler never reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore lets through only what the wheel needs.
COPY . .
# Builds strangler-<version>-cp311-cp311-linux_<arch>.whl plus a wheel for every runtime
# dependency, resolved from pyproject.toml's version ranges.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:3.11.11-slim-bookworm AS base

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Fixed numeric ids, so Kubernetes runAsNonRoot can check them without reading /etc/passwd.
RUN groupadd --system --gid 10001 strangler \
    && useradd --system --no-log-init --uid 10001 --gid strangler \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin strangler

# Install only the built wheels: the project wheel by path, its dependencies from the same
# directory, never from an index. The wheels come through a bind mount, so no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/strangler-*.whl \
    && python -c "import strangler, sys; sys.exit(strangler.build() != 'compiled')"

# 8080: proxy listener. 9901: admin listener (/health/live, /health/ready, /metrics, /status).
EXPOSE 8080 9901

# Python's stdlib, since the slim image has no curl. urlopen raises on any non-2xx answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/health/ready', timeout=2)"]

USER 10001:10001
ENTRYPOINT ["strangler"]


# Demo: the sample monolith, the extracted services and the proxy in one container.
FROM base AS demo
CMD ["demo", "--host", "0.0.0.0"]


# The proxy. Default target: listed last.
FROM base AS runtime
VOLUME ["/etc/strangler"]
# SIGTERM (Docker's default stop signal) starts a graceful drain of shutdown.drain_timeout
# (20s by default); give `docker stop` a longer grace period, e.g. `docker stop -t 30`.
CMD ["serve", "--config", "/etc/strangler/routes.yaml"]
