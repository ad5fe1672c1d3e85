#!/usr/bin/env bash
# GPU round 7 (2026-11-27): after the stage redesign. gsplat compiled once and saved for later calls; the GPU
# tests; fox through `splatforge run --preset fast` (the new code, CPU pycolmap); where a training step's
# time goes (benchmarks/profile_train.py). Data: .gpu/fox.
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -2 $OUT/env.log
[ -f .gpu/gsplat_build.tar.xz ] || (cd "$GSPLAT_BUILD" && tar -cf - . | xz -T16 -6 > $OUT/gsplat_build.tar.xz; ls -la $OUT/gsplat_build.tar.xz)
export SPLATFORGE_TEST_DATA=$PWD/.gpu
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_splat_render.py tests/test_splat_train.py > $OUT/gpu_tests.log 2>&1; tail -3 $OUT/gpu_tests.log
cp -r .gpu/fox /tmp/fox
timeout 200 python3 -m splatforge run /tmp/fox/images -o /tmp/fox_run --preset fast --json > $OUT/fox_fast.json 2> $OUT/fox_fast.err; echo "fox run rc=$?"
python3 - <<'PY'
import json
m = json.load(open("/tmp/fox_run/run.json")); t = json.load(open("/tmp/fox_run/train.json"))
print({k: round(v.get("seconds") or 0, 1) for k, v in m["stages"].items()})
print("train phases", t.get("phases"), "psnr", round(t["eval"]["psnr"], 3), "ssim", round(t["eval"]["ssim"], 4), "G", t["num_gaussians"])
print("poses", json.load(open("/tmp/fox_run/poses.json"))["seconds"])
PY
timeout 150 python3 benchmarks/profile_train.py /tmp/fox_run --preset fast --json $OUT/profile_fast.json 2>&1 | tail -45
