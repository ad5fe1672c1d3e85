"""Sum the Ceres reports of a video_mapping_profile.py log per global/local bundle adjustment."""
import re, sys, collections
lines = open(sys.argv[1]).read().splitlines()
kind = "?"; rows = []
for i, l in enumerate(lines):
    if "=== Global bundle" in l or "Global bundle adjustment" in l and "incremental_pipeline" in l: kind = "global"
    if "Retriangulation and Global" in l: kind = "global"
    if "Registering image" in l: kind = "local"
    if "Bundle adjustment report" in l:
        blk = "\n".join(lines[i:i+8])
        g = lambda k: re.search(k + r"\s*:\s*(\S+)", blk)[1]
        rows.append((kind, int(g("Residuals")), int(g("Iterations")), float(g("Time")), g("Termination")))
        if kind=="global" and len(sys.argv)>2: print(rows[-1])
agg = collections.defaultdict(lambda: [0,0,0.0,0])
for k, r, it, t, term in rows:
    a = agg[k]; a[0]+=1; a[1]+=it; a[2]+=t; a[3]+= term=="NO_CONVERGENCE"
for k,a in agg.items(): print(k, "calls", a[0], "iters", a[1], "ceres_s", round(a[2],1), "no_conv", a[3])
