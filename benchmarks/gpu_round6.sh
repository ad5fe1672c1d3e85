#!/usr/bin/env bash
# GPU round 6 (fox): poses once, then MCMC at 7k steps and the default recipe stretched to 30k steps.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
cp -r .gpu/fox /tmp/fox
python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --until poses > /dev/null 2> $OUT/poses.err; echo "poses rc=$?"
B="python3 benchmarks/train_bench.py /tmp/fox_run --scratch /tmp/tb"
timeout 150 $B --presets mcmc --steps 7000 --set 'resolution_schedule=[[0.3,4],[0.6,2]]' --json $OUT/tb_mcmc7k.json 2>&1 | tail -1
timeout 390 $B --presets default --steps 30000 --json $OUT/tb_default30k.json 2>&1 | tail -1
