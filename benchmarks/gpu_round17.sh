#!/usr/bin/env bash
# GPU round 17 (2026-11-28) on one H100, issue 17: keyframes first (video and photos), and whether images the
# incremental mapper leaves out are placed by the retry. Sets up pycolmap-cuda12 (gpu_round14.sh poses-setup),
# runs gpu_round15.sh's variants on CAPTURE, prints its table and the stage's own lines on keyframes and retries.
#   bash benchmarks/gpu_round17.sh CAPTURE "NAME [KEY=VALUE ...]" ...
# Carry .whl/gpu-poses, .whl/plyfile-1.1.5-py3-none-any.whl and .gpu/CAPTURE.
capture=$1; shift
bash benchmarks/gpu_round14.sh poses-setup
bash benchmarks/gpu_round15.sh "$capture" "$@" > /tmp/r14/table.txt
for variant in "$@"; do
  read -r name _ <<< "$variant"
  grep -h "keyframes placed\|more images registered\|tried again\|mapping failed" "/tmp/r14/out/$capture-$name.log" \
    | sed "s/^/$name: /" | cut -c1-220
done
cat /tmp/r14/table.txt
