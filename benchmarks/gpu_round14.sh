#!/usr/bin/env bash
# GPU round 14 (2026-11-27) on one H100, over several calls on the same warm machine:
#   bash benchmarks/gpu_round14.sh poses-setup                        (pycolmap-cuda12; carry .whl/gpu-poses and the plyfile wheel)
#   bash benchmarks/gpu_round14.sh poses NAME CAPTURE [KEY=VALUE ...]  (poses_bench.py on .gpu/CAPTURE -> $OUT/NAME.json)
#   bash benchmarks/gpu_round14.sh train-setup                        (gsplat; carry the gsplat and plyfile wheels)
#   bash benchmarks/gpu_round14.sh train NAME RUN PRESET [KEY=VALUE ...] (train_bench.py -> $OUT/NAME.json)
#   bash benchmarks/gpu_round14.sh profile NAME RUN PRESET            (profile_train.py -> $OUT/NAME.json)
# Issue 17: colosseum's frames (.gpu/colo67, .gpu/colo150: images/ as `splatforge run colosseum.mp4 --until
# frames [--frames 150]` wrote them) posed as video frames (`ordered=true`), SIFT at the first octave 0 (the new
# default for video frames) and at -1 (`video_first_octave=null`, as before). Issue 16: how busy the GPU is while
# `fast` trains the small captures, and where a step's time goes.
R=/tmp/r14; mkdir -p $R/data $R/out
case "$1" in
poses-setup)  # plyfile too: the stage writes the sparse points as PLY
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/plyfile-*.whl
  W=.whl/gpu-poses SITE=/tmp/site_poses LIBS=/tmp/poses_libs . benchmarks/gpu_pycolmap_env.sh > $R/env.log 2>&1
  tail -1 $R/env.log
  echo "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH" > $R/poses_env.sh ;;
poses)
  name=$2; capture=$3; shift 3
  . $R/poses_env.sh; export PYTHONPATH=/tmp/site_poses:/tmp/site:${SRC:-$PWD/src}  # SRC: a baseline copy of src/
  [ -d $R/data/$capture ] || cp -r .gpu/$capture $R/data/
  sets=(); [ $# -gt 0 ] && sets=(--set "$@")
  timeout 300 python3 benchmarks/poses_bench.py --data $R/data --captures "$capture" "${sets[@]}" \
    --json $R/out/$name.json ${KEEP:+--keep $KEEP} > $R/out/$name.log 2>&1; echo "$name rc=$?"  # KEEP: run folders
  cp $R/out/$name.json "$OUT/" 2>/dev/null; tail -c 3000 $R/out/$name.log > "$OUT/$name.log" ;;
train-setup)
  . benchmarks/gpu_env.sh > $R/train_env.log 2>&1; tail -2 $R/train_env.log ;;
train|profile)
  what=$1; name=$2; run=$3; preset=$4; shift 4
  export PYTHONPATH=/tmp/site:${SRC:-$PWD/src} PYTHONUNBUFFERED=1  # SRC: another copy of src/ (a baseline)
  [ -d $R/data/$run ] || { mkdir -p $R/data/$(dirname $run); cp -r .gpu/$run $R/data/$(dirname $run)/; }
  sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  if [ $what = train ]; then
    timeout 300 python3 benchmarks/train_bench.py $R/data/$run --presets $preset "${sets[@]}" --scratch $R/s/$name \
      --json $R/out/$name.json > $R/out/$name.log 2>&1
  else
    timeout 300 python3 benchmarks/profile_train.py $R/data/$run --preset $preset --json $R/out/$name.json \
      > $R/out/$name.log 2>&1
  fi
  echo "$name rc=$?"; cp $R/out/$name.json "$OUT/" 2>/dev/null; tail -c 4000 $R/out/$name.log > "$OUT/$name.log" ;;
esac
