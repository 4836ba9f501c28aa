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
"$PY" -m tests.reliability.crash_campaign --kills "${NOCD_CRASH_KILLS:-1000}" "$@"
# Fuzzing (issue #10, bad input): >= 1,000,000 atheris inputs through the SIP parser, digest
# challenges, Alertmanager bodies and the trap receiver (python -m tests.reliability.fuzz_sip,
# needs `pip install -e '.[fuzz]'`); JSON report, exit 1 on any exception other than a
# parser's own or any input over 10 ms. Inputs found go to artifacts/fuzz/.
# NOCD_FUZZ_RUNS / NOCD_FUZZ_SECONDS (the time bound) change the size.
"$PY" -m tests.reliability.fuzz_sip --runs "${NOCD_FUZZ_RUNS:-1000000}" \
  --seconds "${NOCD_FUZZ_SECONDS:-7200}" --report artifacts/fuzz/report.json
