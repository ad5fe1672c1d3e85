#!/usr/bin/env bash
# The test command (README, CI). Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run ./setup.sh first" >&2; exit 2; }
# Service tests against a throw-away PostgreSQL when Debian's postgresql is installed (SQLite otherwise).
if [ -z "${SPLATFORGE_TEST_DB:-}" ] && pg_env=$(scripts/pg_for_tests.sh start); then
  eval "$pg_env"
  trap 'scripts/pg_for_tests.sh stop' EXIT
fi
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$rc"
