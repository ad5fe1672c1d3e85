#!/usr/bin/env bash
# One command for a fresh machine: a virtual environment in .venv with splatforge, its extras, the
# dev tools, the web viewer's npm assets, and the system packages the browser and service tests use.
#   ./setup.sh            everything
#   SPLATFORGE_NO_SYSTEM=1 ./setup.sh   skip apt-get (Chromium, PostgreSQL)
# torch: the CUDA build where `nvidia-smi` sees a GPU, the CPU build (torch==2.13.0) otherwise; likewise
# pycolmap: its CUDA build (pycolmap-cuda12, CUDA 12 runtime from PyPI) on GPU hosts, the CPU build otherwise.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "splatforge needs Python >= 3.10"'
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel

if python -c 'import torch' 2>/dev/null; then
  say "torch $(python -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  say "NVIDIA GPU found: installing the CUDA build of torch"
  python -m pip install "torch"
else
  say "no NVIDIA GPU: installing the CPU build torch==${TORCH_VERSION}"
  # A CPU wheel of this version is on pip's find-links on our machines; elsewhere PyTorch's CPU index has it.
  python -m pip install "torch==${TORCH_VERSION}" 2>/dev/null \
    || python -m pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
fi

say "installing splatforge with extras [server,dev]"
python -m pip install -q -e ".[server,dev]"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
   && ! python -c 'import pycolmap, sys; sys.exit(not pycolmap.has_cuda)' 2>/dev/null; then
  # pycolmap's CUDA build (SIFT and matching on the GPU): the same version as the CPU build, with its CUDA 12
  # runtime from PyPI. Both builds install the package `pycolmap`, so the CPU one goes first, entirely.
  PYCOLMAP_VERSION=$(python -c 'import importlib.metadata as m; print(m.version("pycolmap"))' 2>/dev/null || true)
  say "NVIDIA GPU found: installing pycolmap-cuda12${PYCOLMAP_VERSION:+==$PYCOLMAP_VERSION} (SIFT and matching on the GPU)"
  python -m pip uninstall -q -y pycolmap pycolmap-cuda12 >/dev/null 2>&1 || true
  if ! python -m pip install -q "pycolmap-cuda12${PYCOLMAP_VERSION:+==$PYCOLMAP_VERSION}"; then
    echo "!! pycolmap-cuda12 could not be installed: putting the CPU build back (poses run on the CPU)" >&2
    python -m pip install -q "pycolmap${PYCOLMAP_VERSION:+==$PYCOLMAP_VERSION}"
  fi
  python -c 'import pycolmap; print("pycolmap", pycolmap.__version__, "CUDA:", pycolmap.has_cuda)' \
    || echo "!! pycolmap-cuda12 does not import (libSM/libICE missing? apt-get install libsm6 libice6)" >&2
fi

if [ -f src/splatforge/viewer/web/package.json ]; then
  if command -v npm >/dev/null 2>&1; then
    say "installing the web viewer's npm assets"
    (cd src/splatforge/viewer/web && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "!! npm not found: the web viewer (splatforge view) needs Node.js and npm; install them and re-run ./setup.sh" >&2
  fi
fi

if [ -z "${SPLATFORGE_NO_SYSTEM:-}" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  ldconfig -p 2>/dev/null | grep -q 'libSM.so.6 ' || need+=(libsm6 libice6)  # pycolmap-cuda12 links them
  command -v pg_ctlcluster >/dev/null 2>&1 || [ -x /usr/lib/postgresql/*/bin/postgres ] 2>/dev/null || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing system packages: ${need[*]} (browser and PostgreSQL tests)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || echo "!! could not install ${need[*]}; the browser/PostgreSQL tests will be skipped" >&2
  fi
fi

say "done. Try:  .venv/bin/splatforge demo     then:  make test"
