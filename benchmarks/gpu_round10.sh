#!/usr/bin/env bash
# GPU round 10 (2026-11-27): the final check after every merge. Carry .whl (gsplat, plyfile, gpu-poses/) and
# .gpu (fox, gsplat_build.tar.xz). GPU tests; fox images -> PLY with `splatforge run --preset fast` (GPU SIFT).
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
. benchmarks/gpu_pycolmap_env.sh > $OUT/pycolmap_env.log 2>&1 || { tail -5 $OUT/pycolmap_env.log; exit 1; }
export SPLATFORGE_TEST_DATA=$PWD/.gpu
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_splat_render.py tests/test_splat_train.py \
  tests/test_fused_ssim.py > $OUT/gpu_tests.log 2>&1; tail -1 $OUT/gpu_tests.log
cp -r .gpu/fox /tmp/fox
/usr/bin/time -f "wall %e s" timeout 150 python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --preset fast \
  --engine colmap --json > $OUT/fox_fast.json 2> $OUT/fox_fast.err; echo "fox run rc=$?"; tail -1 $OUT/fox_fast.err
python3 - <<'PY'
import json
m = json.load(open("/tmp/fox_run/run.json")); t = json.load(open("/tmp/fox_run/train.json"))
p = json.load(open("/tmp/fox_run/poses.json"))
print("stages s:", {k: round(v.get("seconds") or 0, 1) for k, v in m["stages"].items()})
print("poses:", p["seconds"], p["registered"], "/", p["total"], "mapper", p.get("mapper"))
print("train phases", t.get("phases"), "PSNR", round(t["eval"]["psnr"], 3), "SSIM", round(t["eval"]["ssim"], 4), "G", t["num_gaussians"])
PY
