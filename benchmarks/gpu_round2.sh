#!/usr/bin/env bash
# GPU round 2 (fox in .gpu/fox): `splatforge run` end to end with the fast preset, then training variants
# on its poses (coarse-to-fine, longer) and the default preset. Logs to $OUT.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -2 $OUT/env.log
cp -r .gpu/fox /tmp/fox
t0=$(date +%s.%N)
python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --preset fast --json > $OUT/run_fast.json 2> $OUT/run_fast.err
echo "e2e fast rc=$? wall=$(echo "$(date +%s.%N) - $t0" | bc) s"
python3 - <<'PY'
import json
d = json.load(open("/tmp/fox_run/run.json"))
print({k: round(v.get("seconds") or 0, 1) for k, v in d["stages"].items()})
t = json.load(open("/tmp/fox_run/train.json")); p = json.load(open("/tmp/fox_run/poses.json"))
print("poses", p["registered"], p["total"], p["seconds"], "| train", t["eval"], t["num_gaussians"], t["seconds"], t["steps_per_s"])
PY
cp /tmp/fox_run/run.json /tmp/fox_run/poses.json /tmp/fox_run/train.json $OUT/ 2>/dev/null
B="python3 benchmarks/train_bench.py /tmp/fox_run --scratch /tmp/tb"
timeout 100 $B --presets fast --set 'resolution_schedule=[[0.3,4],[0.6,2]]' --json $OUT/tb_c2f3k.json 2>&1 | tail -1
timeout 120 $B --presets fast --steps 5000 --set 'resolution_schedule=[[0.3,4],[0.6,2]]' --json $OUT/tb_c2f5k.json 2>&1 | tail -1
timeout 200 $B --presets default --json $OUT/tb_default.json 2>&1 | tail -1
