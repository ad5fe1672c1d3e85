#!/usr/bin/env bash
# GPU round 5: `splatforge bench` over fox and the colosseum frames (extracted with PyAV on the CPU host),
# fast and default presets. Bench files to $OUT.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
mkdir -p /tmp/data && cp -r .gpu/fox /tmp/data/fox && mkdir -p /tmp/data/colosseum && cp -r .gpu/col/frames /tmp/data/colosseum/images
cd /tmp && python3 -m splatforge bench /tmp/data/fox/images /tmp/data/colosseum/images \
  --presets fast,default -o /tmp/bench5 > $OUT/bench_stdout.txt 2> $OUT/bench_stderr.txt
echo "bench rc=$?"
cp /tmp/bench5/bench.json /tmp/bench5/bench.md /tmp/bench5/bench.html $OUT/
head -40 /tmp/bench5/bench.md
