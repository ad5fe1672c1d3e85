#!/usr/bin/env bash
# PyAV (video decoding: `splatforge run video.mp4`) for a GPU host without an index: the cp312-compatible
# abi3 wheel (36 MB, FFmpeg inside) unpacked and xz-compressed as .whl/av.tar.xz (25 MB), which
# benchmarks/gpu_env.sh unpacks into /tmp/site. It does not fit one call beside .whl/service.tar.xz and
# .whl/gpu-poses: carry it with gpu-poses and the video (e.g. the colosseum part of large_capture.py:
# carry .whl/av.tar.xz .whl/gpu-poses .whl/gsplat-*.whl .whl/plyfile-*.whl .gpu/colosseum.mp4,
# `--parts video`).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp/dl" av==18.1.0
mkdir -p "$tmp/site" .whl && (cd "$tmp/site" && unzip -q "$tmp"/dl/av-*.whl)
tar -C "$tmp/site" -cf - . | xz -T0 -6 > .whl/av.tar.xz
rm -rf "$tmp"
ls -la .whl/av.tar.xz
