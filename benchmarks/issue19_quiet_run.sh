#!/usr/bin/env bash
# The quiet-machine run of every issue-19 target, this tree against a base checkout:
#   BASE=/path/to/base-checkout bash benchmarks/issue19_quiet_run.sh   (from this tree; logs in /tmp/final)
set -u
PY=${PY:-$(pwd)/.venv/bin/python}
NEW=$(pwd)
BASE=${BASE:?set BASE to a checkout of the base commit}
OUT=${OUT:-/tmp/final}
mkdir -p $OUT
export PARLEY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
run() { name=$1; shift; echo "=== $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"; "$@" > $OUT/$name.log 2>&1; echo "rc=$? $(date -u +%T)"; tail -25 $OUT/$name.log | grep -v '^{' ; }
cd $NEW
run scan_ab $PY benchmarks/ab_bench.py scan --baseline $BASE --rounds 21
run scan_new $PY benchmarks/http_bench.py scan
run fanout_new $PY benchmarks/http_bench.py fanout
run fanout_ab $PY benchmarks/ab_bench.py fanout --baseline $BASE --rounds 3
run fanout_ab_wsproto $PY benchmarks/ab_bench.py fanout --baseline $BASE --rounds 3 --ws-client wsproto
run bulk_ab $PY benchmarks/ab_bench.py bulk --baseline $BASE --rounds 3
for i in 1 2; do
  (cd $BASE && run bulk_base$i $PY benchmarks/http_bench.py bulk)
  run bulk_new$i $PY benchmarks/http_bench.py bulk
done
run tools $PY benchmarks/tools_bench.py --backend both --baseline $BASE
run scaleout_new $PY benchmarks/http_bench.py scaleout
(cd $BASE && run scaleout_base $PY benchmarks/http_bench.py scaleout)
echo ALL DONE $(date -u +%T)
