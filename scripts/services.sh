#!/usr/bin/env bash
# Makes sure the local MariaDB (127.0.0.1:3306, root without password) and Redis
# (127.0.0.1:6379) that the integration tests use are running; starts them if not.
set -euo pipefail

wait_for() {  # wait_for NAME CMD...: up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$name did not come up" >&2; return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

if ! mariadb-admin -uroot -h 127.0.0.1 ping >/dev/null 2>&1; then
  echo "starting mariadb"
  install -d -o mysql -g mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
  wait_for mariadb mariadb-admin -uroot -h 127.0.0.1 ping
fi
echo "services up: redis $(redis-cli -h 127.0.0.1 ping), mariadb $(mariadb-admin -uroot -h 127.0.0.1 ping)"
