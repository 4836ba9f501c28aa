#!/bin/sh
# The full crash campaign (issue #10): SIGKILL `nocd run` at >= 1,000 random points during an
# outage storm, then audit pages, tickets and the database. Prints a JSON report; exit 1 if
# anything was lost, doubled or corrupted. Record the figures in tests/reliability/RESULTS.md.
#   tests/reliability/run_full.sh                 # 1,000 kills, 100 sites
#   NOCD_CRASH_KILLS=5000 tests/reliability/run_full.sh --seed 7
set -eu
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
# Soak (issue #10): 10,000 sip_options checks for 30 minutes, 0.5 % of SIP replies dropped
# (python -m tests.reliability.soak); JSON report, stops here (exit 1) on a false hard
# failure, an incident, > 10 % RSS growth after warm-up or event-loop lag p99 > 50 ms.
# NOCD_SOAK_CHECKS / NOCD_SOAK_MINUTES (whole minutes) change the size.
timeout $(( ${NOCD_SOAK_MINUTES:-30} * 60 + 900 )) "$PY" -m tests.reliability.soak \
  --checks "${NOCD_SOAK_CHECKS:-10000}" --minutes "${NOCD_SOAK_MINUTES:-30}" --drop 0.005
exec "$PY" -m tests.reliability.crash_campaign --kills "${NOCD_CRASH_KILLS:-1000}" "$@"
