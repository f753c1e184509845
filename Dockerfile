#
# One image for every artq role; the command picks the role (see docker-compose.yml):
#   celery -A workers worker -Q fetch|predict|refresh|train   workers (the default command)
#   celery -A workers beat                                    the one scheduler
#   celery -A workers flower                                  monitoring (FLOWER_BASIC_AUTH from the env)
#   artq dashboard --host 0.0.0.0 --port 8050                 the dashboard
#   artq simulator --host 0.0.0.0 --port 8090                 the simulated AppDynamics controller
#   artq init-db                                              migrations (Alembic), one-shot
#
# Build (BuildKit: RUN --mount; the daemon's built-in frontend, so no `syntax=` line):
#   DOCKER_BUILDKIT=1 docker build -t artq:latest .
# No secrets go into the image: credentials arrive at run time as environment variables (or
# NAME_FILE files, read by the entrypoint).
#
# Layers, so that a code change rebuilds only the last thin one:
#   deps   a virtualenv with the dependencies listed in pyproject.toml (depends on that file only)
#   wheel  artq's own wheel, --no-deps (depends on the code)
#   runtime: the deps venv copied in one layer, then the artq wheel installed over it

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- deps: the production dependencies, in a venv copied whole into the runtime ---------------
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# mysqlclient compiles from source: a C compiler, pkg-config and the MariaDB client headers.
# Debian package versions follow the pinned base image, so they are not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only pyproject.toml: the dependency list is read from it, so this stage is rebuilt when the
# dependencies change, never when the code does.
COPY pyproject.toml ./
# The pip cache (a BuildKit cache mount, never in a layer) keeps downloads and the compiled
# mysqlclient between builds. The packages' own test suites are removed: never imported at run
# time, they weigh tens of MB (numpy, pandas, scipy, scikit-learn). pip and setuptools leave the
# venv too (the runtime installs artq with the base image's pip).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python -m venv /opt/artq \
 && /opt/artq/bin/pip install -r requirements.txt \
 && /opt/artq/bin/pip uninstall -y pip setuptools \
 && find /opt/artq/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && find /opt/artq/lib -name '*.pyi' -delete

# ---- wheel: artq itself, without its dependencies -----------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md beat_schedule.py ./
COPY artq ./artq
COPY workers ./workers
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime: the venv, the MariaDB client library, a non-root user ------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="artq" \
      org.opencontainers.image.description="Hourly 6-hour forecasts of Average Response Time from AppDynamics metrics, on Celery workers." \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ARTQ_HOME=/var/lib/artq \
    ARTQ_MODELS_DIR=/var/lib/artq/models

# libmariadb3: mysqlclient's run-time library. libgomp1: OpenMP for XGBoost and scikit-learn.
# A fixed uid so a shared models volume or NFS export can be owned by it on every machine; the
# models directory exists in the image, owned by artq, so a fresh named volume mounted on it
# starts out writable by the worker.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 artq \
 && useradd --system --uid 10001 --gid artq --home-dir /var/lib/artq --shell /usr/sbin/nologin artq \
 && install -d -o artq -g artq -m 0750 /var/lib/artq /var/lib/artq/models

COPY --from=deps /opt/artq /opt/artq

# The thin layer a code change rebuilds: artq's wheel alone, its dependencies already present
# (pip is run from the base image; the venv carries none). --no-index: nothing is downloaded.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    python -m pip --python /opt/artq/bin/python install --no-cache-dir --no-index --no-deps /wheels/*.whl

# Every role's `celery` and `artq` come from the venv (set only now: the step above uses the base
# image's pip).
ENV PATH=/opt/artq/bin:$PATH

COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/artq-entrypoint

USER 10001:10001
WORKDIR /var/lib/artq

# Refuses .env.example's CHANGE-ME placeholders and reads NAME_FILE secrets, then runs the role.
ENTRYPOINT ["artq-entrypoint"]

# The default role is a worker, and so is the default health check: the worker in this container
# answers a remote-control ping through the broker. Compose overrides the check for other roles.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A workers inspect ping --timeout 10 --destination \"celery@$HOSTNAME\" >/dev/null"]

EXPOSE 5555 8050 8090

CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO"]
