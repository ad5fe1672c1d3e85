# Source at the start of a command on a bare GPU host that has torch but not our other dependencies
# (the lent H100: no internet). Wheels are carried in .whl/ (see docs/benchmarks.md for how they are fetched).
#   . benchmarks/gpu_env.sh
# Installs them into /tmp/site, puts src/ on PYTHONPATH, and compiles gsplat's CUDA code once (~80 s).
set -e
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
# Large binary wheels travel unpacked and xz-compressed (pycolmap: 38 MB as a wheel, 21 MB so).
for t in .whl/*.tar.xz; do [ -f "$t" ] && mkdir -p /tmp/site && tar -xJf "$t" -C /tmp/site; done
export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PYTHONUNBUFFERED=1
export MAX_JOBS=${MAX_JOBS:-16}
# gsplat's compiled CUDA code from an earlier call (benchmarks/gpu_save_gsplat.sh writes it): ninja then
# finds every object up to date and the ~80 s compile is skipped.
GSPLAT_BUILD=$(python3 -c "from torch.utils.cpp_extension import _get_build_directory as d; print(d('gsplat_cuda', False))")
if [ -f .gpu/gsplat_build.tar.xz ] && [ ! -f "$GSPLAT_BUILD/gsplat_cuda.so" ]; then
  mkdir -p "$GSPLAT_BUILD" && tar -xJf .gpu/gsplat_build.tar.xz -C "$GSPLAT_BUILD"
  # pip just wrote gsplat's sources with the current time: make the objects newer, or ninja rebuilds all
  sleep 1; find "$GSPLAT_BUILD" -type f -exec touch {} +
fi
t0=$(date +%s)
python3 -c "import torch, gsplat; from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA build failed'; print('gsplat', gsplat.__version__, 'on', torch.cuda.get_device_name())"
echo "gsplat CUDA ready in $(( $(date +%s) - t0 )) s"
splatforge() { python3 -m splatforge "$@"; }
set +e
