#!/usr/bin/env bash
# Poll GPU round 12 (benchmarks/gpu_round12.sh) for up to $1 seconds (or until it is done), then copy its
# results to $OUT and print where each lane is.
R=/tmp/r12; end=$(( $(date +%s) + ${1:-500} ))
while [ ! -e $R/all.done ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
mkdir -p "$OUT/r12" && cp -r $R/out/. "$OUT/r12/" 2>/dev/null; cp $R/driver.log "$OUT/r12/" 2>/dev/null
for i in 0 1 2 3; do echo "lane $i: $(grep -a '^[0-9][0-9]:' $R/out/lane$i.log | tail -1) $( [ -e $R/lane$i.done ] && echo DONE)"; done
[ -e $R/all.done ] && echo "ALL DONE"
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
