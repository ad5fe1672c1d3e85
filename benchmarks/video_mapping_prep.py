"""Features and matching of RUN/frames as the pose stage makes them for video frames (ordered), no mapping:
a database for mapping_speed.py / video_mapping_profile.py.  python benchmarks/video_mapping_prep.py RUN"""
import sys, time
from pathlib import Path
from splatforge.poses import PoseOptions, colmap_engine
from splatforge.poses.inputs import list_images
run = Path(sys.argv[1]); frames = run/"frames"; db = run/"colmap"/"database.db"
names = list_images(frames); opts = PoseOptions(num_threads=2)
c = time.process_time()
s = colmap_engine.extraction_settings(frames, names, opts)
colmap_engine.prepare_database(db, s, colmap_engine.matching_settings(opts))
colmap_engine.extract(db, frames, names, opts, s)
plan = colmap_engine.plan_pairs(db, names, opts, True)
colmap_engine.match(db, names, plan, opts, run/"colmap"/"work")
ev = colmap_engine.read_evidence(db, names, opts.min_num_inliers)
print(run, len(names), plan.scheme, len(plan.pairs or []), ev, "cpu", time.process_time()-c)
