#!/usr/bin/env bash
# GPU round 12 (2026-11-27), on a lent 4-GPU host: four lanes at once, one per GPU, then the GPUs together.
#   lane 0 (issue 14): fox `fast` as a source splat -> a 1000-view orbit at 1920x1080 -> `default` on it on
#          1 GPU; once lanes 1-3 are done, the same on 2 and 4 GPUs (`--gpus`); then fox `quality` on 4 GPUs.
#   lane 1 (issue 16): pytest -m gpu (the one-GPU tests); fox `fast` with seeds 0, 1, 2 at l1_weight 1.0 and
#          0.8; llff_fern and dtu_scan24 the same with seed 0; then the
#          colosseum pose curve (150, 300, 567 frames; issue 14) once pycolmap-cuda12 and PyAV are set up.
#   lane 2 (issue 16): fox `quality` (30k steps); then `quality` at 15k with coarse-to-fine and several views.
#   lane 3 (issue 16): fox `mcmc` (30k steps); then mcmc at 7k with coarse-to-fine and several views.
# Lanes that share a host share its CPU (64 cores): each training loop needs about one.
# Started detached by the first call:  setsid nohup bash benchmarks/gpu_round12.sh > /tmp/r12/driver.log 2>&1 &
# Data (copied to /tmp/r12/data by the calls that carry it): fox (raw, for the tests), fox_posed, llff_fern,
# dtu_scan24 (run folders posed by `splatforge run CAPTURE --until poses --engine colmap` on the CPU machine).
R=/tmp/r12; D=$R/data; O=$R/out
mkdir -p $O
cd "$(dirname "$0")/.."
TB="python3 benchmarks/train_bench.py"

wait_for() { while [ ! -e "$1" ]; do sleep 2; done; }
stamp() { echo "$(date +%T) $*"; }

lane0() {
  export CUDA_VISIBLE_DEVICES=0
  stamp "source splat"
  $TB $D/fox_posed --presets fast --scratch $R/l0 --json $O/l0_source.json
  stamp "orbit"
  python3 -m splatforge.synthetic_splat $R/l0/fast $R/orbit -n 1000 --size 1920x1080
  for g in 0 0,1 0,1,2,3; do
    n=$(echo $g | tr ',' '\n' | wc -l)
    [ "$n" -gt 1 ] && { wait_for $R/lane1.done; wait_for $R/lane2.done; wait_for $R/lane3.done; }
    stamp "orbit default on $n GPU(s)"
    t=$(date +%s%N)
    CUDA_VISIBLE_DEVICES=0,1,2,3 timeout 400 python3 -m splatforge train $R/orbit/transforms.json -o $R/orbit_g$n \
      --preset default --gpus $g --no-resume --json > $O/orbit_g$n.json 2> $O/orbit_g$n.err
    echo "{\"rc\": $?, \"wall_ms\": $(( ($(date +%s%N) - t) / 1000000 ))}" > $O/orbit_g$n.wall.json
    cp $R/orbit_g$n/train.json $O/orbit_g$n.train.json 2>/dev/null
  done
  stamp "fox quality on 4 GPUs"
  t=$(date +%s%N)
  CUDA_VISIBLE_DEVICES=0,1,2,3 timeout 400 python3 -m splatforge train $D/fox_posed/transforms.json -o $R/fox_q4 \
    --preset quality --gpus 0,1,2,3 --no-resume --json > $O/fox_quality_g4.json 2> $O/fox_quality_g4.err
  echo "{\"rc\": $?, \"wall_ms\": $(( ($(date +%s%N) - t) / 1000000 ))}" > $O/fox_quality_g4.wall.json
  cp $R/fox_q4/train.json $O/fox_quality_g4.train.json 2>/dev/null
}

lane1() {
  export CUDA_VISIBLE_DEVICES=1
  stamp "pytest -m gpu"
  SPLATFORGE_TEST_DATA=$D timeout 400 python3 -m pytest -m gpu -q -p no:cacheprovider -k "not two_gpus" tests \
    > $O/pytest_gpu.log 2>&1; echo "pytest rc=$?" >> $O/pytest_gpu.log
  for s in 0 1 2; do for w in 1.0 0.8; do
    stamp "fox fast seed $s l1 $w"
    $TB $D/fox_posed --presets fast --set l1_weight=$w --set seed=$s --scratch $R/l1/fox_${w}_$s \
      --json $O/l1_fox_${w}_s$s.json
    cp $R/l1/fox_${w}_$s/fast/train.json $O/l1_fox_${w}_s$s.train.json
  done; done
  for cap in llff_fern dtu_scan24; do
    wait_for $D/$cap.ready
    for w in 1.0 0.8; do
      stamp "$cap fast l1 $w"
      $TB $D/$cap --presets fast --set l1_weight=$w --scratch $R/l1/${cap}_$w --json $O/l1_${cap}_${w}_s0.json
    done
  done
  # small images leave the GPU idle: several views per step on fern (706x529), same steps and half the steps
  for v in "batch_size=2" "batch_size=4" "batch_size=4 steps=1000"; do
    stamp "llff_fern fast $v"
    set -- $v; sets=""; for kv in "$@"; do sets="$sets --set $kv"; done
    $TB $D/llff_fern --presets fast $sets --scratch $R/bs/"${v// /_}" --json $O/bs_fern_"${v// /_}".json
  done
  # issue 14: the colosseum pose curve (GPU SIFT; mapping on the CPU), once pycolmap-cuda12 and PyAV are here
  wait_for $R/poses_env.sh; wait_for $R/av.ready
  . $R/poses_env.sh
  stamp "colosseum pose curve"
  timeout 560 python3 benchmarks/large_capture.py --parts video --video $D/colosseum.mp4 --frames 150,300,567 \
    --out $R/large --budget 540 > $O/large_capture.log 2>&1
  cp $R/large/large_capture.json $O/ 2>/dev/null
}

lane2() {
  export CUDA_VISIBLE_DEVICES=2
  stamp "fox quality"
  timeout 600 $TB $D/fox_posed --presets quality --scratch $R/l2a --json $O/q_quality30k.json
  cp $R/l2a/quality/train.json $O/q_quality30k.train.json
  stamp "fox quality 15k coarse-to-fine, views"
  timeout 300 $TB $D/fox_posed --presets quality --steps 15000 --set 'resolution_schedule=[[0.3,4,4],[0.6,2,2]]' \
    --scratch $R/l2b --json $O/q_quality15k_c2f.json
}

lane3() {
  export CUDA_VISIBLE_DEVICES=3
  stamp "fox mcmc"
  timeout 600 $TB $D/fox_posed --presets mcmc --scratch $R/l3a --json $O/q_mcmc30k.json
  for n in 7000; do
    stamp "fox mcmc $n coarse-to-fine, views"
    timeout 300 $TB $D/fox_posed --presets mcmc --steps $n --set 'resolution_schedule=[[0.3,4,4],[0.6,2,2]]' \
      --scratch $R/l3_$n --json $O/q_mcmc${n}_c2f.json
  done
}

for i in 0 1 2 3; do
  ( lane$i > $O/lane$i.log 2>&1; touch $R/lane$i.done ) &
done
wait
stamp "all lanes done"
touch $R/all.done
