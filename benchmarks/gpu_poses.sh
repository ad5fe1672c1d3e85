#!/usr/bin/env bash
# Pose stage on the lent H100 with pycolmap's CUDA build (issue 17): per capture, seconds per sub-step,
# photos placed, mapper kept, fox's accuracy; GPU first, then the same on the CPU build's code path
# (use_gpu=false) on the same host for comparison. Prints a short table last.
#
# Carry (device run `carry`): .whl/gpu-poses and .gpu
#   .whl/gpu-poses/pycolmap_cuda12-4.2.1-sm90.tar.xz   pycolmap-cuda12 4.2.1 (cp312), unpacked, its CUDA fatbins
#                                                      for other GPUs than sm_90 zeroed (benchmarks/prune_fatbin.py)
#   .whl/gpu-poses/nvidia_cuda_runtime_cu12-*.whl      libcudart.so.12 (the host has CUDA 13 only)
#   .whl/gpu-poses/libsm6_*.deb libice6_*.deb          libSM/libICE (Debian amd64), unpacked with dpkg -x
#   .gpu/<capture>/images/...                          one or more captures (fox with its transforms.json)
# libcurand.so.10 comes from the host (its CUDA 13 toolkit or nvidia-curand wheel).
#
#   bash benchmarks/gpu_poses.sh [capture ...]     (default: every folder in .gpu/)
# Writes $OUT/gpu_poses_<capture>.json and $OUT/cpu_poses_<capture>.json, and $OUT/gpu_poses.log.
set -u
OUT=${OUT:-/tmp/gpu_poses_out}
mkdir -p "$OUT"
W=.whl/gpu-poses
SITE=/tmp/site_poses
LIBS=/tmp/poses_libs
exec > >(tee -a "$OUT/gpu_poses.log") 2>&1

if [ -z "${GPU_POSES_SKIP_ENV:-}" ]; then
. benchmarks/gpu_pycolmap_env.sh || exit 1
fi

captures=("$@")
if [ ${#captures[@]} -eq 0 ]; then
  for d in .gpu/*/; do captures+=("$(basename "$d")"); done
fi
echo "== captures: ${captures[*]}"
for name in "${captures[@]}"; do
  echo "== $name on the GPU"
  timeout 200 python3 benchmarks/poses_bench.py --data .gpu --captures "$name" ${COMPARE_MAPPERS---compare-mappers} \
    --json "$OUT/gpu_poses_$name.json" 2>&1 | grep -v '^[IW][0-9]\{8\} ' | tail -4
  [ "${GPU_POSES_CPU:-1}" = 1 ] || continue
  echo "== $name on the CPU (16 cores, same code, use_gpu=false)"
  timeout 150 python3 benchmarks/poses_bench.py --data .gpu --captures "$name" --set use_gpu=false \
    --json "$OUT/cpu_poses_$name.json" 2>&1 | grep -v '^[IW][0-9]\{8\} ' | tail -2
done

echo "== summary (seconds per sub-step; rot° = fox's rotation error against its reference)"
python3 - "$OUT" "${captures[@]}" <<'EOF'
import json, sys, pathlib
out, names = pathlib.Path(sys.argv[1]), sys.argv[2:]
print("capture  | device | reg     | mapper      | feat  | match | map   | undist | total | rot° med | checks")
for name in names:
    for dev in ("gpu", "cpu"):
        p = out / f"{dev}_poses_{name}.json"
        if not p.exists():
            print(f"{name:8} | {dev:6} | (no result: see the log)"); continue
        for r in json.loads(p.read_text())["captures"]:
            s, a, c = r.get("seconds") or {}, r.get("accuracy") or {}, r.get("check") or {}
            f = lambda k: "-" if s.get(k) is None else f"{s[k]:.1f}"
            rot = a.get("rotation_median_deg")
            print(f"{name:8} | {dev:6} | {r.get('registered')}/{r.get('total'):<4} | {str(r.get('mapper')):11} | "
                  f"{f('features'):5} | {f('matching'):5} | {f('mapping'):5} | {f('undistortion'):6} | "
                  f"{f('total'):5} | {'-' if rot is None else f'{rot:.3f}':8} | "
                  f"{'ok' if c.get('ok') else c.get('problems') or r.get('error')}")
    p = out / f"gpu_poses_{name}.json"
    for m in json.loads(p.read_text()).get("mappers", []) if p.exists() else []:
        a = m.get("accuracy") or {}
        print(f"{name:8} |   mapper {m['mapper']:11}: {m['registered']}/{m['total']} in {m['wall_s']:.1f} s, "
              f"rot° {a.get('rotation_median_deg', '-')}, checks {'ok' if (m.get('check') or {}).get('ok') else m.get('check')}")
EOF
