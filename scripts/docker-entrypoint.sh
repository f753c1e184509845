#!/bin/sh
# The artq image's entrypoint (installed as /usr/local/bin/artq-entrypoint), then the role's
# command. Two jobs, both before any artq code runs:
#
# 1. NAME_FILE secrets: for every variable NAME_FILE=/path (Docker or Compose secrets), NAME is
#    set from the file's content (trailing newline dropped) and NAME_FILE is unset, so a secret
#    never has to sit in an environment block or on a command line.
# 2. Placeholders: any variable whose value still contains .env.example's "CHANGE-ME" stops the
#    container with one line naming every such variable (never a value). This holds wherever
#    the image runs, including worker machines started with `docker compose up --no-deps`.
#
# `artq-entrypoint --check` only does the checks (the compose `preflight` service).
set -eu

names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p')

for name in $names; do
  case "$name" in
    *_FILE) ;;
    *) continue ;;
  esac
  target=${name%_FILE}
  eval "path=\${$name-}"
  [ -n "$path" ] || continue
  if [ ! -r "$path" ]; then
    echo "artq: $name names $path, which is missing or unreadable by uid $(id -u); mount the secret there or unset $name" >&2
    exit 78
  fi
  value=$(cat "$path")
  export "$target=$value"
  unset "$name"
done

names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p')
placeholders=""
for name in $names; do
  eval "value=\${$name-}"
  case "$value" in
    *CHANGE-ME*) placeholders="${placeholders:+$placeholders, }$name" ;;
  esac
done
if [ -n "$placeholders" ]; then
  echo "artq: still the CHANGE-ME placeholder of .env.example: $placeholders; set real values in .env (or the environment) and start again" >&2
  exit 78
fi

if [ "${1-}" = "--check" ]; then
  echo "artq: no placeholder secrets in this container's environment"
  exit 0
fi
exec "$@"
