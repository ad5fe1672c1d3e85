#!/usr/bin/env bash
# A throw-away PostgreSQL on loopback for the service tests (Debian's `postgresql` package).
#
#   eval "$(scripts/pg_for_tests.sh start)"   # exports SPLATFORGE_TEST_DB and SPLATFORGE_TEST_PG_DIR
#   scripts/pg_for_tests.sh stop              # stops it and removes its folder (uses SPLATFORGE_TEST_PG_DIR)
#
# `start` prints the export lines on stdout (messages go to stderr) and exits 1 when PostgreSQL is not
# installed, so callers fall back to SQLite. Runs as the `postgres` user when started as root.
set -euo pipefail

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

as_owner() {  # run a PostgreSQL binary as a non-root user (postgres refuses to run as root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bin dir port
  bin=$(find_bin) || { echo "pg_for_tests: PostgreSQL is not installed (apt-get install postgresql); using SQLite" >&2; exit 1; }
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "pg_for_tests: running as root and there is no postgres user; using SQLite" >&2; exit 1
  fi
  dir=$(mktemp -d /tmp/splatforge-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$dir/data" -U splatforge -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { echo "pg_for_tests: initdb failed (see $dir/initdb.log)" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { echo "pg_for_tests: PostgreSQL did not start (see $dir/server.log)" >&2; exit 1; }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U splatforge splatforge_test
  echo "pg_for_tests: PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2
  echo "export SPLATFORGE_TEST_DB=postgresql+psycopg://splatforge@127.0.0.1:$port/splatforge_test"
  echo "export SPLATFORGE_TEST_PG_DIR=$dir"
}

stop() {
  local dir=${1:-${SPLATFORGE_TEST_PG_DIR:-}} bin
  [ -n "$dir" ] && [ -d "$dir/data" ] || { echo "pg_for_tests: nothing to stop" >&2; return 0; }
  bin=$(find_bin) || return 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-start}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
