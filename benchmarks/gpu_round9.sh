#!/usr/bin/env bash
# GPU round 9 (2026-11-27): after merging issues 12, 13, 15, 16, 17. Carry .whl (gsplat, plyfile,
# gpu-poses/) and .gpu (fox, gsplat_build.tar.xz). The GPU tests; fox's poses with pycolmap's CUDA build
# (both mappers, accuracy against the reference); fox images -> PLY with `splatforge run --preset fast`;
# the export formats that need no Node; one more training variant. A table per part.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
. benchmarks/gpu_pycolmap_env.sh > $OUT/pycolmap_env.log 2>&1 || { tail -5 $OUT/pycolmap_env.log; exit 1; }
grep -E "has_cuda|smoke" $OUT/pycolmap_env.log
export SPLATFORGE_TEST_DATA=$PWD/.gpu
timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_splat_render.py tests/test_splat_train.py \
  tests/test_fused_ssim.py > $OUT/gpu_tests.log 2>&1; tail -1 $OUT/gpu_tests.log
COMPARE_MAPPERS=--compare-mappers GPU_POSES_CPU=0 GPU_POSES_SKIP_ENV=1 timeout 150 bash benchmarks/gpu_poses.sh fox 2>&1 | tail -8
cp -r .gpu/fox /tmp/fox
timeout 150 python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --preset fast --engine colmap --json \
  > $OUT/fox_fast.json 2> $OUT/fox_fast.err; echo "fox run rc=$?"; grep -iE "error|warn" $OUT/fox_fast.err | head -5
python3 - <<'PY'
import json
from splatforge.scene import read_scene
from splatforge.scene.align import compare_poses
m = json.load(open("/tmp/fox_run/run.json")); t = json.load(open("/tmp/fox_run/train.json"))
p = json.load(open("/tmp/fox_run/poses.json"))
print("stages s:", {k: round(v.get("seconds") or 0, 1) for k, v in m["stages"].items()})
print("poses:", p["seconds"], p["registered"], "/", p["total"], "mapper", p.get("mapper"), "check", (p.get("check") or {}).get("ok"))
err = compare_poses(read_scene("/tmp/fox_run/transforms.json"), read_scene("/tmp/fox/transforms.json"))
print(f"fox vs reference: median rotation {err.median_rotation_deg:.3f} deg, matched {err.matched}")
print("train phases", t.get("phases"), "PSNR", round(t["eval"]["psnr"], 3), "SSIM", round(t["eval"]["ssim"], 4), "G", t["num_gaussians"], "lpips", t["eval"].get("lpips"))
print("export", {k: v["bytes"] for k, v in m["stages"]["export"]["summary"]["files"].items()}, "skipped", list(m["stages"]["export"]["summary"].get("skipped", {})))
PY
timeout 120 python3 benchmarks/export_bench.py /tmp/fox_run --psnr --json $OUT/export_fox.json 2>&1 | tail -8
B="timeout 60 python3 benchmarks/train_bench.py /tmp/fox_run --presets fast --scratch /tmp/tb"
$B --steps 2500 --json $OUT/tb_fast2500.json 2>&1 | tail -1
$B --json $OUT/tb_fast.json 2>&1 | tail -1
