#!/usr/bin/env bash
# GPU round 13 (2026-11-27): the pose stage with the new feature budget on one H100 (issue 17), GPU SIFT and
# matching (pycolmap-cuda12), mapping on the CPU. Carry .whl/gpu-poses and the captures under .gpu/ (fox with its
# transforms.json; llff_fern, dtu_scan24, sacre_coeur as copies of ../shared/data), over several calls:
#   bash benchmarks/gpu_round13.sh setup                 (pycolmap environment; once per machine)
#   bash benchmarks/gpu_round13.sh bench NAME CAPTURE [KEY=VALUE ...]   (one poses_bench.py run -> $OUT/NAME.json)
#   bash benchmarks/gpu_round13.sh table                 (every result so far, one row each)
# The old defaults, for the before/after on the same machine:
#   max_image_size=1280 prescale=false sequential_overlap=10 verify_max_trials=10000
R=/tmp/r13; mkdir -p $R/data $R/out
case "$1" in
setup)
  W=.whl/gpu-poses SITE=/tmp/site_poses LIBS=/tmp/poses_libs . benchmarks/gpu_pycolmap_env.sh > $R/env.log 2>&1
  tail -1 $R/env.log
  echo "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH; export PYTHONPATH=/tmp/site_poses:/tmp/site:$PWD/src" > $R/env.sh ;;
bench)
  name=$2; capture=$3; shift 3
  . $R/env.sh; export PYTHONPATH=/tmp/site_poses:/tmp/site:$PWD/src
  for d in .gpu/*/; do [ -d "$R/data/$(basename $d)" ] || cp -r "$d" $R/data/; done
  mkdir -p $R/data/videos; [ -f .gpu/colosseum.mp4 ] && cp .gpu/colosseum.mp4 $R/data/videos/
  sets=(); [ $# -gt 0 ] && sets=(--set "$@")
  timeout 400 python3 benchmarks/poses_bench.py --data $R/data --captures "$capture" "${sets[@]}" \
    --json $R/out/$name.json > $R/out/$name.log 2>&1; echo "$name rc=$?"
  cp $R/out/$name.json $R/out/$name.log "$OUT/" 2>/dev/null ;;
table)
  python3 - $R/out <<'PY'
import json, sys, pathlib
print("| run | capture | registered | features | matching | mapping | undistortion | total | CPU s | rot. median / max |")
print("|---|---|---|---|---|---|---|---|---|---|")
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    for r in json.loads(p.read_text())["captures"]:
        s, a = r.get("seconds") or {}, r.get("accuracy") or {}
        f = lambda k: "-" if s.get(k) is None else f"{s[k]:.2f}"
        rot = "-" if a.get("rotation_median_deg") is None else f"{a['rotation_median_deg']:.3f} / {a.get('rotation_max_deg', float('nan')):.3f}"
        cpu = (r.get("cpu_seconds") or {}).get("total")
        print(f"| {p.stem} | {r.get('capture')} | {r.get('registered')}/{r.get('total')} | {f('features')} | {f('matching')} | "
              f"{f('mapping')} | {f('undistortion')} | {f('total')} | {cpu} | {rot} |")
PY
  ;;
esac
