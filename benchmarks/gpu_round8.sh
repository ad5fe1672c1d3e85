#!/usr/bin/env bash
# GPU round 8 (2026-11-27): training speed levers on fox (issue 16). The fused SSIM's tests and benchmark;
# fox posed once; then the fast preset with and without the fused SSIM, and with several views per step in
# the coarse phases and fewer steps; the best one profiled. Data: .gpu/fox (+ .gpu/gsplat_build.tar.xz).
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
bash benchmarks/gpu_ssim.sh 2>&1 | grep -E "rc=|passed|failed|1080|540|270|speed|max" | head -30
cp -r .gpu/fox /tmp/fox
timeout 120 python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --until poses --json > /dev/null 2> $OUT/poses.err; echo "poses rc=$?"
B="timeout 100 python3 benchmarks/train_bench.py /tmp/fox_run --presets fast --scratch /tmp/tb"
SPLATFORGE_FUSED_SSIM=0 $B --json $OUT/tb_a_ref_ssim.json 2>&1 | tail -1
$B --json $OUT/tb_b_fused.json 2>&1 | tail -1
$B --set 'resolution_schedule=[[0.3,4,4],[0.6,2,2]]' --json $OUT/tb_c_views.json 2>&1 | tail -1
$B --steps 2000 --set 'resolution_schedule=[[0.3,4,4],[0.6,2,2]]' --json $OUT/tb_d_views2k.json 2>&1 | tail -1
$B --steps 2000 --json $OUT/tb_e_2k.json 2>&1 | tail -1
$B --steps 1500 --set 'resolution_schedule=[[0.4,4,4],[0.7,2,2]]' --json $OUT/tb_f_views1500.json 2>&1 | tail -1
timeout 100 python3 benchmarks/profile_train.py /tmp/fox_run --preset fast --json $OUT/profile_fused.json 2>&1 | grep -E "^== |groups|train\(\)"
python3 - <<'PY'
import glob, json, os
print("| variant | steps | loop s | train() s | steps/s | PSNR | SSIM | Gaussians | GPU busy |")
for f in sorted(glob.glob(os.environ["OUT"] + "/tb_*.json")):
    r = json.load(open(f))[0]
    print(f"| {os.path.basename(f)[3:-5]} | {r['steps']} | {r['wall_s']} | {r['stage_s']} | {r['steps_per_s']} | {r['psnr']} | {r['ssim']} | {r['num_gaussians']} | {r['gpu_busy_median']} |")
PY
