#!/usr/bin/env bash
# Run nocd's benchmarks, each part bounded in time; installs missing tools first.
#
#   bench/run.sh [--quick] [PART ...]
#
# PARTS: sip (SIP OPTIONS capacity through the whole daemon, with the bare-loop floor),
#        sip-paths (bench_sip.py: bare / paced probe / scheduler+pipeline), page (failure to
#        page vs Prometheus/Alertmanager), storm, footprint, http, snmp. Default: sip page
#        storm footprint. --quick: smaller sizes and one repeat (a smoke run, minutes).
# Output: each part's Markdown on stdout and in bench/out/<part>-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
QUICK=0
PARTS=()
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) PARTS+=("$a") ;;
    esac
done
[ ${#PARTS[@]} -eq 0 ] && PARTS=(sip page storm footprint)

need_apt() {  # need_apt BINARY PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2 (for $1)" >&2
    timeout 600 apt-get install -y "$2" >/dev/null
}
[ -x "$PY" ] || { python3 -m venv .venv && timeout 900 .venv/bin/pip install -q -e '.[test]'; }

mkdir -p bench/out
stamp=$(date +%Y%m%d-%H%M)
{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs,"\
         "$(lscpu | sed -n 's/^Model name: *//p' | head -1),"\
         "$(free -m | awk '/Mem:/{print $2}') MiB RAM, $($PY -V)"
} | tee "bench/out/machine-$stamp.md"

run() {  # run PART SECONDS CMD...
    local part=$1 limit=$2; shift 2
    echo "## $part: $*" | tee -a "bench/out/$part-$stamp.md"
    timeout "$limit" "$@" 2> "bench/out/$part-$stamp.log" | tee -a "bench/out/$part-$stamp.md"
}

for part in "${PARTS[@]}"; do
    case "$part" in
        sip)
            if [ $QUICK = 1 ]; then
                run sip 600 $PY bench/bench_daemon_sip.py --targets 1000,20000 --interval 10 --intervals 2 --warm --bare
            else
                run sip 3600 $PY bench/bench_daemon_sip.py --targets 1000,10000,20000,50000 --interval 30 --intervals 3 --warm --bare
                run sip 900 $PY bench/bench_daemon_sip.py --targets 20000,50000 --interval 30 --intervals 2
            fi ;;
        sip-paths)
            run sip-paths 1800 $PY bench/bench_sip.py --targets 1000,20000,50000 ;;
        page)
            need_apt prometheus prometheus
            need_apt prometheus-alertmanager prometheus-alertmanager
            need_apt prometheus-blackbox-exporter prometheus-blackbox-exporter
            if [ $QUICK = 1 ]; then
                run page 300 $PY bench/bench_page.py --checks 1000 --kills 3 --warmup 20
            else
                run page 600 $PY bench/bench_page.py --checks 10000 --kills 10
            fi ;;
        storm)
            if [ $QUICK = 1 ]; then
                run storm 300 $PY bench/bench_storm.py --phones 500 --sites 40 --spread 10 --window 30
            else
                run storm 900 $PY bench/bench_storm.py --phones 5000 --sites 200 --spread 50
            fi ;;
        footprint)
            if [ $QUICK = 1 ]; then
                run footprint 300 $PY bench/bench_footprint.py --idle 10 --checks 2000 --repeats 1
            else
                run footprint 900 $PY bench/bench_footprint.py --idle 60 --checks 10000 --repeats 3
            fi ;;
        http)
            need_apt prometheus prometheus
            need_apt prometheus-blackbox-exporter prometheus-blackbox-exporter
            run http 1800 $PY bench/bench_http.py ;;
        snmp)
            need_apt snmpd snmpd
            need_apt snmpget snmp
            run snmp 900 $PY bench/bench_snmp.py --gets 2000 --rounds 3 ;;
        *) echo "unknown part: $part" >&2; exit 2 ;;
    esac
done
