#!/usr/bin/env bash
# GPU: the loss's L1 weight (1.0 vs 0.8, hold-out PSNR over the shared captures) and the loss SSIM's speed.
# Before: .whl/ must also hold torchmetrics and lightning-utilities wheels (pure Python):
#   pip download --no-deps -d .whl "torchmetrics>=1.4" lightning-utilities
# and .gpu/ the captures to compare, as in earlier rounds (fox, llff_fern, dtu_scan24, col/frames).
# Run: bash benchmarks/gpu_metrics.sh   (device tool). One call has 10 minutes: poses take ~1 min per capture
# and `default` ~40-90 s per training on the H100, so split the captures over calls, e.g.
#   CAPTURES="fox llff_fern" bash benchmarks/gpu_metrics.sh;  CAPTURES="dtu_scan24 col/frames" SKIP_SSIM=1 bash ...
# Prints: the SSIM timing table (ms per forward+backward per image size, incl. fused-ssim when it imports),
# one JSON row per (capture, weight), a table, and "l1_weight W: mean hold-out PSNR ... +/-D dB against 1.0".
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; tail -1 $OUT/env.log
PRESET=${PRESET:-default}
[ -n "$SKIP_SSIM" ] || python3 benchmarks/ssim_candidates_bench.py --json $OUT/ssim_gpu.json 2>&1 | tail -8
runs=()
for cap in ${CAPTURES:-fox llff_fern dtu_scan24 col/frames}; do
  [ -d .gpu/$cap ] || continue
  name=$(echo $cap | tr / _)
  src=.gpu/$cap; [ -d $src/images ] && src=$src/images
  mkdir -p /tmp/cap_$name && cp -r $src /tmp/cap_$name/images
  python3 -m splatforge run /tmp/cap_$name/images -o /tmp/run_$name --until poses > /dev/null 2> $OUT/poses_$name.err
  echo "poses $name rc=$?"
  runs+=(/tmp/run_$name)
done
timeout 560 python3 benchmarks/loss_weight_bench.py "${runs[@]}" --preset $PRESET --weights 1.0,0.8 \
  --scratch /tmp/l1 --json $OUT/l1_weight_$PRESET.json 2> $OUT/l1_weight.err | tail -14
