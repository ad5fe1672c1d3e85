#!/usr/bin/env bash
# Fused SSIM on the GPU (issue 16): the fused-SSIM tests with compiled kernels on CUDA, then the benchmark.
# Needs only torch (with its Triton) and src/: no gsplat build, no data. About a minute of device time.
#   bash benchmarks/gpu_ssim.sh        ($OUT: fused_ssim_tests.log, ssim_bench.log, ssim_bench.json)
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OUT=${OUT:-/tmp}
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'on', torch.cuda.get_device_name())"
timeout 300 python3 -m pytest -q -s -rs -p no:cacheprovider tests/test_fused_ssim.py > $OUT/fused_ssim_tests.log 2>&1
echo "tests rc=$?"; grep -E "passed|failed|error|fused .* ms" $OUT/fused_ssim_tests.log | tail -5
timeout 240 python3 benchmarks/ssim_bench.py --tiles 4x128/8x64/w4,8x256/32x64/w8,16x128/32x64/w8 \
  --json $OUT/ssim_bench.json > $OUT/ssim_bench.log 2>&1
echo "bench rc=$?"; cat $OUT/ssim_bench.log
