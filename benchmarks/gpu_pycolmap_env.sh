# Source on the GPU host: pycolmap's CUDA build (carried in .whl/gpu-poses, see gpu_poses.sh) into $SITE,
# its CUDA 12 runtime and libSM/libICE on LD_LIBRARY_PATH, then a GPU SIFT + matching smoke test.
#   W=.whl/gpu-poses SITE=/tmp/site_poses LIBS=/tmp/poses_libs . benchmarks/gpu_pycolmap_env.sh
W=${W:-.whl/gpu-poses}; SITE=${SITE:-/tmp/site_poses}; LIBS=${LIBS:-/tmp/poses_libs}
echo "== environment"
rm -rf "$SITE" "$LIBS" && mkdir -p "$SITE" "$LIBS"
tar -xJf "$W"/pycolmap_cuda12-*.tar.xz -C "$SITE" || { echo "!! could not unpack pycolmap-cuda12"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
  "$W"/nvidia_cuda_runtime_cu12-*.whl || { echo "!! could not install the CUDA 12 runtime wheel"; exit 1; }
for deb in "$W"/*.deb; do dpkg -x "$deb" "$LIBS"; done
CUDART_DIR=$(dirname "$(find "$SITE" -name 'libcudart.so.12*' | head -1)")
CURAND=$(find /usr/local /usr/lib /opt -name 'libcurand.so.10*' 2>/dev/null | head -1)
[ -n "$CURAND" ] || { echo "!! libcurand.so.10 not found on this host"; exit 1; }
export LD_LIBRARY_PATH="$CUDART_DIR:$(dirname "$CURAND"):$LIBS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
echo "libcudart: $CUDART_DIR  libcurand: $CURAND"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 - <<'EOF' || { echo "!! pycolmap-cuda12 is not usable here: see above"; exit 1; }
import numpy as np, pycolmap, tempfile, pathlib, cv2
print("pycolmap", pycolmap.__version__, "has_cuda", pycolmap.has_cuda, pycolmap.COLMAP_build)
assert pycolmap.has_cuda, "this pycolmap has no CUDA"
# smoke test: SIFT on the GPU of one textured image, and GPU matching of it with itself, shifted
d = pathlib.Path(tempfile.mkdtemp()); (d / "im").mkdir()
rng = np.random.default_rng(0)
img = cv2.resize(rng.integers(0, 255, (60, 80), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
cv2.imwrite(str(d / "im" / "a.png"), img); cv2.imwrite(str(d / "im" / "b.png"), np.roll(img, 7, axis=1))
opts = pycolmap.FeatureExtractionOptions(); opts.use_gpu = True
pycolmap.extract_features(d / "db.db", d / "im", extraction_options=opts, device=pycolmap.Device.cuda)
m = pycolmap.FeatureMatchingOptions(); m.use_gpu = True
pycolmap.match_exhaustive(d / "db.db", matching_options=m, device=pycolmap.Device.cuda)
db = pycolmap.Database.open(d / "db.db")
print("GPU smoke test: keypoints", db.num_keypoints(), "matched pairs", db.num_matched_image_pairs(),
      "verified", db.num_verified_image_pairs())
assert db.num_keypoints() > 100
EOF
