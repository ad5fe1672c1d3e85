#!/usr/bin/env bash
# GPU round 3: end to end on fox (fast, then default from its poses) and on colosseum (frames extracted
# beforehand with PyAV on the CPU host into .gpu/col; fast then default). Logs to $OUT.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
summ() { python3 - "$1" <<'PY'
import json, sys
r = sys.argv[1]
d = json.load(open(f"{r}/run.json"))
st = {k: round(v.get("seconds") or 0, 1) for k, v in d["stages"].items()}
t = json.load(open(f"{r}/train.json")); p = json.load(open(f"{r}/poses.json"))
print(r, "stages", st, "sum", round(sum(st.values()), 1))
print("  poses", p["registered"], "/", p["total"], p["seconds"], "| train", t["preset"], t["steps"], "psnr %.2f ssim %.3f" % (t["eval"]["psnr"], t["eval"]["ssim"]), "G", t["num_gaussians"], "loop_s", t["seconds"], "it/s", t["steps_per_s"], "mem", t["peak_gpu_mem_gb"])
PY
}
cp -r .gpu/fox /tmp/fox; cp -r .gpu/col /tmp/col
python3 -m splatforge run /tmp/fox/images -o /tmp/fox_fast --preset fast > /dev/null 2> $OUT/fox_fast.err; summ /tmp/fox_fast | tee -a $OUT/summary.txt
cp -al /tmp/fox_fast /tmp/fox_default; rm -rf /tmp/fox_default/checkpoints
python3 -m splatforge run /tmp/fox/images -o /tmp/fox_default --preset default --from train > /dev/null 2> $OUT/fox_default.err; summ /tmp/fox_default | tee -a $OUT/summary.txt
python3 -m splatforge run /tmp/col --preset fast > /dev/null 2> $OUT/col_fast.err; summ /tmp/col | tee -a $OUT/summary.txt
cp -al /tmp/col /tmp/col_default; rm -rf /tmp/col_default/checkpoints
python3 -m splatforge run /tmp/col_default --preset default --from train > /dev/null 2> $OUT/col_default.err; summ /tmp/col_default | tee -a $OUT/summary.txt
cp /tmp/fox_fast/report.html $OUT/fox_fast_report.html; cp /tmp/col/quality.json $OUT/col_quality.json
tail -3 $OUT/*.err
