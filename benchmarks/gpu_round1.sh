#!/usr/bin/env bash
# GPU round 1 on the lent H100 (fox carried in .gpu/fox): gsplat build, GPU tests, doctor, poses on 16
# cores, the fast training preset. Logs go to $OUT. Usage (device): bash benchmarks/gpu_round1.sh
. benchmarks/gpu_env.sh > $OUT/env.log 2>&1; cat $OUT/env.log
export SPLATFORGE_TEST_DATA=$PWD/.gpu
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_splat_render.py tests/test_splat_train.py tests/test_doctor.py 2>&1 | tail -25 | tee $OUT/gpu_tests.log
timeout 45 python3 -m splatforge doctor --json --deep --gpu > $OUT/doctor.json 2> $OUT/doctor.txt; echo "doctor exit $?" | tee -a $OUT/doctor.txt
timeout 150 python3 benchmarks/poses_bench.py --captures fox --mappers incremental global 2>&1 | grep -v "^[IW]2026" | tail -12 | tee $OUT/poses_fox.log
timeout 150 python3 benchmarks/train_bench.py .gpu/fox/transforms.json --presets fast --json $OUT/train_fox.json 2>&1 | grep -v "^[IW]2026" | tail -15 | tee $OUT/train_fox.log
