#!/usr/bin/env bash
# The test command (README, CI). Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run ./setup.sh first" >&2; exit 2; }
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$rc"
