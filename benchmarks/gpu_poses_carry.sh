#!/usr/bin/env bash
# Prepare what benchmarks/gpu_poses.sh carries to the GPU host (run here, on the CPU machine, from the repo root):
#   .whl/gpu-poses/  pycolmap-cuda12 (pruned to sm_90, unpacked, xz), the CUDA 12 runtime wheel, libSM/libICE .debs
#   .gpu/<capture>/  fox (+ its transforms.json), dtu_scan24, llff_fern, sacre_coeur, colosseum (67 frames)
# Both folders are git-ignored. One device call carries .whl/gpu-poses and at most ~33 MB of .gpu (64 MiB in all).
set -euo pipefail
PY=${PYTHON:-python3}
DATA=${SPLATFORGE_TEST_DATA:-../shared/data}
W=.whl/gpu-poses
mkdir -p "$W" .gpu
TMP=$(mktemp -d)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$TMP" pycolmap-cuda12==4.2.1 nvidia-cuda-runtime-cu12==12.9.79
mv "$TMP"/nvidia_cuda_runtime_cu12-*.whl "$W"/
mkdir "$TMP/u" && (cd "$TMP/u" && unzip -q "$TMP"/pycolmap_cuda12-*.whl)
$PY benchmarks/prune_fatbin.py "$TMP"/u/pycolmap/_core.cpython-312-x86_64-linux-gnu.so 90
(cd "$TMP/u" && tar -cf - pycolmap pycolmap_cuda12.libs pycolmap_cuda12-4.2.1.dist-info | xz -9 -T0) \
  > "$W/pycolmap_cuda12-4.2.1-sm90.tar.xz"
(cd "$TMP" && apt-get download libsm6 libice6)
for deb in "$TMP"/*.deb; do base=$(basename "$deb"); cp "$deb" "$W/${base//%3a/_}"; done
for c in fox dtu_scan24 llff_fern sacre_coeur; do
  mkdir -p ".gpu/$c" && cp -r "$DATA/$c/images" ".gpu/$c/"
done
cp "$DATA/fox/transforms.json" .gpu/fox/
PYTHONPATH=src $PY -m splatforge frames "$DATA/videos/colosseum.mp4" -o "$TMP/col" >/dev/null
mkdir -p .gpu/colosseum && cp -r "$TMP/col/frames" .gpu/colosseum/images
rm -rf "$TMP"
du -sh "$W" .gpu/*
