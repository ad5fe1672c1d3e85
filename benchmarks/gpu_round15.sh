#!/usr/bin/env bash
# GPU round 15 (2026-11-28) on one H100: mapping levers for issue 17's pose-stage targets (fox <= 5 s,
# <= 150 frames <= 15 s). Runs gpu_round14.sh's `poses` sub-command per variant, then prints one table.
#   bash benchmarks/gpu_round15.sh CAPTURE "NAME [KEY=VALUE ...]" ...   (after gpu_round14.sh poses-setup)
# A NAME starting with "base" runs the code in bench_base/src (`git archive COMMIT src | tar -x -C bench_base`).
capture=$1; shift
names=()
for variant in "$@"; do
  read -r name sets <<< "$variant"
  # shellcheck disable=SC2086
  src=$PWD/src; [[ $name == base* ]] && src=$PWD/bench_base/src; [[ $name == alt* ]] && src=$PWD/bench_alt/src
  SRC=$src bash benchmarks/gpu_round14.sh poses "$capture-$name" "$capture" $sets
  names+=("$capture-$name")
done
python3 - "${names[@]}" <<'PY'
import json, sys
print("variant | reg | mapper | feat | match | map | undist | total | CPU s | rot med/max")
for name in sys.argv[1:]:
    try:
        r = json.load(open(f"/tmp/r14/out/{name}.json"))
        r = r["captures"][0]
    except Exception as exc:
        print(name, "| no result", exc); continue
    s, acc = r.get("seconds", {}), r.get("accuracy") or {}
    print(f"{name} | {r.get('registered')}/{r.get('total')} | {r.get('mapper')} | {s.get('features')} | "
          f"{s.get('matching')} | {s.get('mapping')} | {s.get('undistortion')} | {s.get('total')} | "
          f"{r.get('cpu_s')} | {acc.get('rotation_median_deg', '')}/{acc.get('rotation_max_deg', '')}")
PY
