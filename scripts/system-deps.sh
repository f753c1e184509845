#!/usr/bin/env bash
# Installs the Debian packages artq needs beyond Python, only when they are missing.
#   build: headers to compile mysqlclient (pkg-config, libmariadb-dev)
#   test:  build + Chromium for the browser tests
set -euo pipefail
want=(pkg-config libmariadb-dev)
[[ "${1:-build}" == "test" ]] && want+=(chromium)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "artq needs these system packages: ${missing[*]}. Install them (e.g. sudo apt-get install -y ${missing[*]}) and retry." >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
