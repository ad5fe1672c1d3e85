#!/usr/bin/env bash
# GPU round 4: `splatforge bench` over dtu_scan24 and llff_fern (carried in .gpu/) with the fast and
# default presets. Bench folder copied to $OUT (bench.json/md/html).
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
mkdir -p /tmp/data && cp -r .gpu/* /tmp/data/
cd /tmp && python3 -m splatforge bench /tmp/data/dtu_scan24/images /tmp/data/llff_fern/images \
  --presets fast,default -o /tmp/bench4 > $OUT/bench_stdout.txt 2> $OUT/bench_stderr.txt
echo "bench rc=$?"
cp /tmp/bench4/bench.json /tmp/bench4/bench.md /tmp/bench4/bench.html $OUT/
cat /tmp/bench4/bench.md | head -60
grep -v "^[IW]2026" $OUT/bench_stderr.txt | tail -5
