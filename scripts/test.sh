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
# Several test processes (pytest-xdist): many slow tests wait on subprocesses, Ray and servers, so the cores
# are busier with more than one; tests that share a session result stay in one process (--dist loadgroup,
# tests/conftest.py). SPLATFORGE_TEST_WORKERS=0 runs them all in this one process.
workers=${SPLATFORGE_TEST_WORKERS:-2}
xdist=()
if [ "$workers" != 0 ]; then
  if "$PY" -c 'import xdist' 2>/dev/null; then
    xdist=(-n "$workers" --dist loadgroup --no-loadscope-reorder)  # in conftest's order: the demo first
  else
    echo "pytest-xdist is not installed (./setup.sh installs it): running the tests in one process" >&2
  fi
fi
"$PY" -m pytest "${xdist[@]}" "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$rc"
