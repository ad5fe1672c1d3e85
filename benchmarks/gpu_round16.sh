#!/usr/bin/env bash
# GPU round 16 (2026-11-28) on one H100, issue 17's pose stage. After `bash benchmarks/gpu_round14.sh poses-setup`:
#   bash benchmarks/gpu_round16.sh ab CAPTURE ROUNDS        base (bench_base/src, a `git archive` of main before
#                                                          this round) and this code, interleaved, ROUNDS each
#   bash benchmarks/gpu_round16.sh keep CAPTURE ROUNDS      this code ROUNDS times; the database, poses.json and log
#                                                          of a run that left photos out go to $OUT as .tar.xz
# Each prints gpu_round15.sh's table last.
what=$1; capture=$2; rounds=$3
R=/tmp/r14
if [ "$what" = final ]; then
  bash benchmarks/gpu_round14.sh poses-setup
  bash benchmarks/gpu_round15.sh fox base1 new1 base2 new2 base3 new3 | tail -7 | tee $OUT/fox_ab.txt
  rm -rf $R/keep; KEEP=$R/keep bash benchmarks/gpu_round14.sh poses fox-keep fox
  (. $R/poses_env.sh; PYTHONPATH=/tmp/site_poses:/tmp/site:$PWD/src python3 benchmarks/undistort_bench.py \
    $R/keep/fox/run --repeat 3 | tee $OUT/undistort.txt)
  (. $R/poses_env.sh; export PYTHONPATH=/tmp/site_poses; . benchmarks/gpu_env.sh > $R/train_env.log 2>&1; tail -2 $R/train_env.log
   SPLATFORGE_TEST_DATA=$R/data timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_splat_render.py \
     tests/test_splat_train.py tests/test_fused_ssim.py tests/test_doctor.py > $OUT/pytest_gpu.log 2>&1
   echo "pytest rc=$?"; tail -3 $OUT/pytest_gpu.log)
  exit
fi
variants=()
for i in $(seq "$rounds"); do
  [ "$what" = ab ] && variants+=("base$i")
  variants+=("new$i")
done
if [ "$what" = ab ]; then
  bash benchmarks/gpu_round15.sh "$capture" "${variants[@]}" 
  exit
fi
names=()
for v in "${variants[@]}"; do
  rm -rf $R/keep; KEEP=$R/keep bash benchmarks/gpu_round14.sh poses "$capture-$v" "$capture" ordered=true
  names+=("$capture-$v")
  python3 - "$R/out/$capture-$v.json" <<'PY' && continue
import json, sys
r = json.load(open(sys.argv[1]))["captures"][0]
sys.exit(0 if r.get("registered") == r.get("total") else 1)
PY
  run=$R/keep/$capture/run
  tar -cJf "$OUT/$capture-$v.tar.xz" -C $run colmap/database.db colmap/database.db.json poses.json 2>/dev/null \
    || tar -cJf "$OUT/$capture-$v.tar.xz" -C $run colmap poses.json
  cp $R/out/$capture-$v.log "$OUT/" 2>/dev/null
done
bash benchmarks/gpu_round15.sh "$capture" 2>/dev/null | head -0
python3 - "${names[@]}" <<'PY'
import json, sys
print("variant | reg | mapper | feat | match | map | undist | total | CPU s")
for name in sys.argv[1:]:
    try:
        r = json.load(open(f"/tmp/r14/out/{name}.json"))["captures"][0]
    except Exception as exc:
        print(name, "| no result", exc); continue
    s = r.get("seconds", {})
    print(f"{name} | {r.get('registered')}/{r.get('total')} | {r.get('mapper')} | {s.get('features')} | "
          f"{s.get('matching')} | {s.get('mapping')} | {s.get('undistortion')} | {s.get('total')} | {r.get('cpu_s')}")
PY
# Last call of the round (fox before/after, where undistortion spends its time, the one-GPU tests):
#   bash benchmarks/gpu_round16.sh final   (carry .whl/gpu-poses, plyfile and gsplat wheels, .gpu/fox, .gpu/gsplat_build.tar.xz)
