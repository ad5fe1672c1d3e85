#!/usr/bin/env bash
# GPU round 11 (2026-11-27), on a lent 4-GPU host: the multi-GPU trainer's GPU test, then the job service
# across the GPUs against one (benchmarks/service_gpus.py). Carry .whl/service.tar.xz, the gsplat and plyfile
# wheels, and .gpu (fox, gsplat_build.tar.xz).
. benchmarks/gpu_service_env.sh > $OUT/env.log 2>&1; tail -2 $OUT/env.log
nvidia-smi -L; nproc; free -g | head -2
export SPLATFORGE_TEST_DATA=$PWD/.gpu
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider -k "two_gpus" tests/test_splat_distributed.py \
  > $OUT/dist_test.log 2>&1; echo "distributed GPU test rc=$?"; tail -3 $OUT/dist_test.log
timeout 420 python3 benchmarks/service_gpus.py --capture .gpu/fox --out $OUT --timeout-s 200 \
  > $OUT/service_gpus.log 2>&1; echo "service bench rc=$?"; tail -40 $OUT/service_gpus.log
