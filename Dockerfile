# syntax=docker/dockerfile:1
#
# One image for every artq role; the command picks the role (see docker-compose.yml):
#   celery -A workers worker -Q fetch|predict|refresh|train   workers (the default command)
#   celery -A workers beat                                    the one scheduler
#   celery -A workers flower --basic-auth=USER:PASS           monitoring
#   artq dashboard --host 0.0.0.0 --port 8050                 the dashboard
#   artq simulator --host 0.0.0.0 --port 8090                 the simulated AppDynamics controller
#   artq init-db                                              migrations (Alembic), one-shot
#
# Build:  docker build -t artq:latest .
# No secrets go into the image: credentials arrive at run time as ARTQ_* environment variables.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: compile wheels for artq and all its production dependencies --------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# mysqlclient compiles from source: a C compiler, pkg-config and the MariaDB client headers.
# Debian package versions follow the pinned base image, so they are not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md beat_schedule.py ./
COPY artq ./artq
COPY workers ./workers

# Production dependencies only: no [test] or [bench] extras. kombu[redis] adds what kombu's
# Redis transport imports at run time (`packaging`), which plain `celery` + `redis` leave out.
# The pip cache (a BuildKit cache mount, never in a layer) keeps downloads and the compiled
# mysqlclient between builds, so a code change does not recompile the dependencies.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels . "kombu[redis]"

# ---- runtime: the wheels, the MariaDB client library, a non-root user -----------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="artq" \
      org.opencontainers.image.description="Hourly 6-hour forecasts of Average Response Time from AppDynamics metrics, on Celery workers." \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    ARTQ_HOME=/var/lib/artq \
    ARTQ_MODELS_DIR=/var/lib/artq/models

# libmariadb3: mysqlclient's run-time library. libgomp1: OpenMP for XGBoost and scikit-learn.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# Install from the build stage's wheels only (no index), without copying the wheels into a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl

# A fixed uid so a shared models volume or NFS export can be owned by it on every machine.
# The models directory exists in the image, owned by artq, so a fresh named volume mounted on it
# starts out writable by the worker.
RUN groupadd --system --gid 10001 artq \
 && useradd --system --uid 10001 --gid artq --home-dir /var/lib/artq --shell /usr/sbin/nologin artq \
 && install -d -o artq -g artq -m 0750 /var/lib/artq /var/lib/artq/models

USER 10001:10001
WORKDIR /var/lib/artq

# The default role is a worker, and so is the default health check: the worker in this container
# answers a remote-control ping through the broker. Compose overrides the check for other roles.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A workers inspect ping --timeout 10 --destination \"celery@$HOSTNAME\" >/dev/null"]

EXPOSE 5555 8050 8090

CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO"]
