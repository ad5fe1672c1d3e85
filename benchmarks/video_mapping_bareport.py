"""Sum the Ceres reports of a video_mapping_profile.py log per global / local bundle adjustment.

    python benchmarks/video_mapping_bareport.py LOG [--each]
"""

from __future__ import annotations

import collections
import re
import sys


def field(block: str, key: str) -> str:
    return re.search(key + r"\s*:\s*(\S+)", block)[1]


def main() -> None:
    lines = open(sys.argv[1]).read().splitlines()
    kind, rows = "?", []
    for i, line in enumerate(lines):
        if "=== Global bundle" in line or ("Global bundle adjustment" in line and "incremental_pipeline" in line):
            kind = "global"
        if "Retriangulation and Global" in line:
            kind = "global"
        if "Registering image" in line:
            kind = "local"
        if "Bundle adjustment report" in line:
            block = "\n".join(lines[i:i + 8])
            rows.append((kind, int(field(block, "Iterations")), float(field(block, "Time")), field(block, "Termination")))
            if kind == "global" and len(sys.argv) > 2:
                print(rows[-1])
    totals = collections.defaultdict(lambda: [0, 0, 0.0, 0])
    for k, iterations, seconds, termination in rows:
        t = totals[k]
        t[0], t[1], t[2], t[3] = t[0] + 1, t[1] + iterations, t[2] + seconds, t[3] + (termination == "NO_CONVERGENCE")
    for k, t in totals.items():
        print(k, "calls", t[0], "iters", t[1], "ceres_s", round(t[2], 1), "no_conv", t[3])


if __name__ == "__main__":
    main()
