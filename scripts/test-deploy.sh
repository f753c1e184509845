#!/usr/bin/env bash
# `make test-deploy`: build the image, bring the whole compose stack up, check it, take it down.
#
#   1. builds the image with BuildKit (`docker build`; the Dockerfile uses RUN --mount), tagged
#      artq:deploy-test so it never replaces your artq:latest;
#   2. starts docker-compose.yml (+ tests/deploy/compose.test.yml) as the Compose project
#      `artq-deploy-test`, with fresh random passwords in a throw-away env file, every profile on
#      (simulator, bootstrap), Flower and the dashboard on free loopback ports; waits for health;
#   3. runs the checks of tests/deploy/ (cycles, Flower, the dashboard in Chromium, retraining,
#      and the faults); their figures are printed at the end;
#   4. takes the stack down (volumes included), whatever happened; on failure the containers'
#      logs are kept in $ARTQ_DEPLOY_LOGS (default: a temporary folder, printed).
#
# Needs a Docker engine with Compose v2 (on these machines: ../shared/tools/docker-sandbox/setup
# first; .ci/run does that). Every wait is bounded; the whole run takes about 10 minutes on a
# 2-core machine.
#
# Usage: scripts/test-deploy.sh [pytest args...]     (VENV=path for another virtualenv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PROJECT=${ARTQ_DEPLOY_PROJECT:-artq-deploy-test}
IMAGE=${ARTQ_DEPLOY_IMAGE:-artq:deploy-test}
FILES=docker-compose.yml:tests/deploy/compose.test.yml
say() { echo "test-deploy: $*"; }
die() { echo "test-deploy: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed); start one (here: ../shared/tools/docker-sandbox/setup)"
docker compose version >/dev/null 2>&1 || die "no Compose v2 (docker compose); install it (here: ../shared/tools/docker-sandbox/setup)"
[[ -x "$VENV/bin/python" ]] || die "no Python at $VENV/bin/python; create the venv first (make test)"

# BuildKit is needed (RUN --mount). A client with buildx does it; without buildx, a client older
# than 23 (Debian's /usr/bin/docker) still has BuildKit built in with DOCKER_BUILDKIT=1. A newer
# client without buildx would fall back to the legacy builder, which refuses RUN --mount.
build() {
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load "$@"
  else
    local client
    for client in /usr/bin/docker docker; do
      if command -v "$client" >/dev/null 2>&1 && [[ "$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" -lt 23 ]]; then
        DOCKER_BUILDKIT=1 "$client" build "$@"
        return
      fi
    done
    die "no Docker client can build with BuildKit here (install docker-buildx, or use a client older than 23)"
  fi
}

START=$(date +%s)
WORK=$(mktemp -d)
LOGS=${ARTQ_DEPLOY_LOGS:-$WORK/logs}
ENV_FILE=$WORK/deploy.env
compose() { docker compose -p "$PROJECT" --env-file "$ENV_FILE" -f docker-compose.yml -f tests/deploy/compose.test.yml "$@"; }

# A leftover of an interrupted run goes first (its env file is gone: any values parse the file).
cleanup_previous() {
  local ids
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
  if [[ -n "$ids" ]]; then
    say "removing a previous run's containers"
    docker rm -f $ids >/dev/null
  fi
  docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null
  docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null
}

finish() {
  local rc=$?
  set +e
  if [[ $rc -ne 0 && -f "$ENV_FILE" ]]; then
    mkdir -p "$LOGS"
    for c in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
      name=$(docker inspect -f '{{.Name}}' "$c"); docker logs "$c" >"$LOGS/${name#/}.log" 2>&1
    done
    compose ps -a >"$LOGS/ps.txt" 2>&1
    say "containers' logs kept in $LOGS"
  fi
  [[ -f "$ENV_FILE" ]] && compose down -v --remove-orphans -t 120 >/dev/null 2>&1
  cleanup_previous
  if [[ -s "$WORK/figures.json" ]]; then
    say "fault figures:"
    "$VENV/bin/python" - "$WORK/figures.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"  {'fault':<62} {'cycles':>6} {'lost':>4} {'dup':>4} {'re-run':>6} {'recover s':>9}")
for r in rows:
    print(f"  {r['fault']:<62} {r['cycles']:>6} {r['forecasts_lost']:>4} {r['duplicated']:>4} {r['horizons_rerun']:>6} {r['recover_s']:>9}")
PYEOF
  fi
  say "$([[ $rc -eq 0 ]] && echo passed || echo FAILED) in $(( $(date +%s) - START )) s"
  [[ $rc -ne 0 ]] || rm -rf "$WORK"
  exit $rc
}
trap finish EXIT

cleanup_previous

say "building $IMAGE (BuildKit)"
t=$(date +%s)
build -q -t "$IMAGE" . >/dev/null
say "built in $(( $(date +%s) - t )) s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"))'; }
umask 077
cat >"$ENV_FILE" <<EOF
COMPOSE_PROFILES=simulator,bootstrap
ARTQ_IMAGE=$IMAGE
MARIADB_DATABASE=artq
MARIADB_USER=artq
MARIADB_PASSWORD=$(secret)
MARIADB_ROOT_PASSWORD=$(secret)
REDIS_PASSWORD=$(secret)
FLOWER_USER=admin
FLOWER_PASSWORD=$(secret)
ARTQ_PUBLISH_ADDRESS=127.0.0.1
FLOWER_PORT=$(free_port)
DASHBOARD_PORT=$(free_port)
ARTQ_PREDICT_REPLICAS=2
ARTQ_SOURCE_URL=http://simulator:8090
ARTQ_SOURCE_ALLOW_INSECURE_HTTP=1
ARTQ_SOURCE_CLIENT_ID=artq@customer1
ARTQ_SOURCE_CLIENT_SECRET=$(secret)
ARTQ_BOOTSTRAP_DAYS=30
EOF
umask 022

say "starting the stack ($PROJECT): bootstrap backfill and training included"
t=$(date +%s)
compose up -d --no-build --wait --wait-timeout 600 >"$WORK/up.log" 2>&1 || { tail -20 "$WORK/up.log" >&2; die "the stack did not become healthy within 600 s"; }
# `up --wait` does not wait for one-shot jobs nobody depends on: the first training.
for job in bootstrap-backfill bootstrap-train; do
  out=$(timeout 600 docker compose -p "$PROJECT" --env-file "$ENV_FILE" -f docker-compose.yml -f tests/deploy/compose.test.yml wait "$job" 2>&1 | tail -1) || true
  [[ "$out" == 0 || "$out" == *"status code 0" ]] || die "$job did not complete: ${out:-still running after 600 s}"
done
say "healthy, history and first models in $(( $(date +%s) - t )) s"

say "checks (tests/deploy)"
ARTQ_DEPLOY_PROJECT=$PROJECT ARTQ_DEPLOY_ENV_FILE=$ENV_FILE ARTQ_DEPLOY_COMPOSE_FILES=$FILES \
ARTQ_DEPLOY_FIGURES=$WORK/figures.json \
  timeout 1200 "$VENV/bin/python" -m pytest tests/deploy -p no:cacheprovider -q -ra --timeout 900 "$@"
