#!/bin/sh
# The full crash campaign (issue #10): SIGKILL `nocd run` at >= 1,000 random points during an
# outage storm, then audit pages, tickets and the database. Prints a JSON report; exit 1 if
# anything was lost, doubled or corrupted. Record the figures in tests/reliability/RESULTS.md.
#   tests/reliability/run_full.sh                 # 1,000 kills, 100 sites
#   NOCD_CRASH_KILLS=5000 tests/reliability/run_full.sh --seed 7
set -eu
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m tests.reliability.crash_campaign --kills "${NOCD_CRASH_KILLS:-1000}" "$@"
