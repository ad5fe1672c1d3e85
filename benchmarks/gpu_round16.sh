#!/usr/bin/env bash
# GPU round 16 (2026-11-28) on one H100, issue 17's pose stage. After `bash benchmarks/gpu_round14.sh poses-setup`:
#   bash benchmarks/gpu_round16.sh ab CAPTURE ROUNDS        base (bench_base/src, a `git archive` of main before
#                                                          this round) and this code, interleaved, ROUNDS each
#   bash benchmarks/gpu_round16.sh keep CAPTURE ROUNDS      this code ROUNDS times; the database, poses.json and log
#                                                          of a run that left photos out go to $OUT as .tar.xz
# Each prints gpu_round15.sh's table last.
what=$1; capture=$2; rounds=$3
R=/tmp/r14
variants=()
for i in $(seq "$rounds"); do
  [ "$what" = ab ] && variants+=("base$i")
  variants+=("new$i")
done
if [ "$what" = ab ]; then
  bash benchmarks/gpu_round15.sh "$capture" "${variants[@]}" 
  exit
fi
names=()
for v in "${variants[@]}"; do
  rm -rf $R/keep; KEEP=$R/keep bash benchmarks/gpu_round14.sh poses "$capture-$v" "$capture" ordered=true
  names+=("$capture-$v")
  python3 - "$R/out/$capture-$v.json" <<'PY' && continue
import json, sys
r = json.load(open(sys.argv[1]))["captures"][0]
sys.exit(0 if r.get("registered") == r.get("total") else 1)
PY
  run=$R/keep/$capture/run
  tar -cJf "$OUT/$capture-$v.tar.xz" -C $run colmap/database.db colmap/database.db.json poses.json 2>/dev/null \
    || tar -cJf "$OUT/$capture-$v.tar.xz" -C $run colmap poses.json
  cp $R/out/$capture-$v.log "$OUT/" 2>/dev/null
done
bash benchmarks/gpu_round15.sh "$capture" 2>/dev/null | head -0
python3 - "${names[@]}" <<'PY'
import json, sys
print("variant | reg | mapper | feat | match | map | undist | total | CPU s")
for name in sys.argv[1:]:
    try:
        r = json.load(open(f"/tmp/r14/out/{name}.json"))["captures"][0]
    except Exception as exc:
        print(name, "| no result", exc); continue
    s = r.get("seconds", {})
    print(f"{name} | {r.get('registered')}/{r.get('total')} | {r.get('mapper')} | {s.get('features')} | "
          f"{s.get('matching')} | {s.get('mapping')} | {s.get('undistortion')} | {s.get('total')} | {r.get('cpu_s')}")
PY
