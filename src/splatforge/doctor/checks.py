"""Every check of `splatforge doctor`, and `run_checks` that runs them (heavy imports in child processes)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import socket
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from splatforge.doctor import gpu as gpumod
from splatforge.doctor import toolchain as tc
from splatforge.doctor.model import FAIL, OK, WARN, Check, DoctorOptions, problem
from splatforge.doctor.probe import StepResult, run_probe

GiB = 1024**3
TORCH_STEPS = ["import:torch", "torch_info", "cuda_kernel"]
LIB_STEPS = [
    "import:numpy",
    "import:cv2",
    "import:pycolmap",
    "import:av",
    "import:PIL",
    "import:plyfile",
    "pycolmap_info",
    "av_decode",
]
DEEP_STEPS = ["import:gsplat", "gsplat_render"]
# module -> (pip distribution, need)
LIBS = {"cv2": ("opencv-python-headless", "core"), "av": ("av", "video"), "PIL": ("pillow", "core"),
        "plyfile": ("plyfile", "core")}  # fmt: skip
# CUDA builds that download.pytorch.org publishes wheels for (recent torch releases use a subset).
TORCH_CUDA_TAGS = [(11, 8), (12, 1), (12, 4), (12, 6), (12, 8), (12, 9), (13, 0)]
NUMPY_ABI_MARKERS = (
    "compiled using NumPy 1.x",
    "_ARRAY_API not found",
    "numpy.core.multiarray failed to import",
    "numpy._core.multiarray failed to import",
    "numpy.dtype size changed",
    "module compiled against ABI version",
    "module compiled against API version",
)
VIEWER_ASSETS = (
    Path(__file__).resolve().parents[1] / "viewer" / "web" / "node_modules" / "@sparkjsdev" / "spark"
)


def _gib(n: float | int | None) -> str:
    return "?" if n is None else f"{n / GiB:.1f} GiB"


def _ver(v: tuple[int, ...] | None) -> str:
    return ".".join(map(str, v)) if v else "?"


def torch_index_url(max_cuda: tuple[int, ...] | None) -> str:
    """The PyTorch wheel index for the newest CUDA build not newer than `max_cuda`."""
    tags = [t for t in TORCH_CUDA_TAGS if max_cuda is None or t <= tuple(max_cuda[:2])]
    tag = tags[-1] if tags else TORCH_CUDA_TAGS[0]
    return f"https://download.pytorch.org/whl/cu{tag[0]}{tag[1]}"


def _pip_torch(max_cuda: tuple[int, ...] | None) -> str:
    return f"pip install --force-reinstall torch --index-url {torch_index_url(max_cuda)}"


def _step_failure(r: StepResult) -> str:
    text = r.error
    tail = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    if tail and r.status in ("crashed", "error", "timeout"):
        text += f" (stderr: {tail[-1][:200]})"
    return text


def _numpy_abi(r: StepResult) -> bool:
    return any(m in r.error or m in r.stderr for m in NUMPY_ABI_MARKERS)


@dataclass
class Facts:
    """Everything gathered before the checks judge it."""

    opts: DoctorOptions
    env: dict[str, str]
    needs: frozenset[str]
    steps: dict[str, StepResult]
    nvml: gpumod.NvmlInfo
    cuda_home: tc.CudaHome
    nvcc: tc.Nvcc | None
    nvcc_on_path: tc.Nvcc | None
    host: tc.HostCompiler
    cxx: tc.HostCompiler
    ninja: str | None

    def torch(self) -> dict | None:
        r = self.steps.get("torch_info")
        return r.result if r and r.status == "done" else None

    def torch_cuda(self) -> tuple[int, ...] | None:
        t = self.torch()
        return tc.parse_version(t.get("cuda")) if t else None

    def problem(self, need: str) -> str:
        return problem(need, self.needs)


# ------------------------------------------------------------------------------------------------ python


def check_python(f: Facts) -> Check:
    v = sys.version_info
    where = f"{sys.executable}" + (" (venv)" if sys.prefix != sys.base_prefix else "")
    detail = f"Python {v.major}.{v.minor}.{v.micro} at {where}"
    if (v.major, v.minor) < (3, 10):
        return Check("python", FAIL, detail + ": splatforge needs Python >= 3.10",
                     "python3.11 -m venv .venv && . .venv/bin/activate && ./setup.sh")  # fmt: skip
    return Check("python", OK, detail)


# ------------------------------------------------------------------------------------------------- torch


def check_torch(f: Facts) -> Check:
    imp = f.steps["import:torch"]
    if imp.status != "done":
        fix = 'pip install "numpy<2"' if _numpy_abi(imp) else "pip install --force-reinstall torch"
        return Check("torch", FAIL, f"import torch failed: {_step_failure(imp)}", fix)
    info = f.torch()
    if info is None:
        return Check("torch", FAIL, f"torch imports but cannot be queried: {_step_failure(f.steps['torch_info'])}",
                     "pip install --force-reinstall torch")  # fmt: skip
    if info.get("hip"):
        return Check("torch", f.problem("gpu"), f"torch {info['version']} is a ROCm build; gsplat needs CUDA",
                     _pip_torch(f.nvml.cuda_driver), need="gpu")  # fmt: skip
    if not info.get("cuda"):
        detail = f"torch {info['version']}: CPU-only build"
        if f.nvml.gpus:
            return Check("torch", f.problem("gpu"), detail + f", but {len(f.nvml.gpus)} NVIDIA GPU(s) are present",
                         _pip_torch(f.nvml.cuda_driver), need="gpu")  # fmt: skip
        return Check("torch", OK, detail + " (no NVIDIA GPU here)", data={"version": info["version"]})
    cudnn = f", cuDNN {info['cudnn']}" if info.get("cudnn") else ""
    return Check("torch", OK, f"torch {info['version']}, built for CUDA {info['cuda']}{cudnn}",
                 data={"version": info["version"], "cuda": info["cuda"]})  # fmt: skip


def check_cuda(f: Facts) -> Check:
    info = f.torch()
    bad = f.problem("gpu")
    if info is None:
        return Check(
            "cuda", bad, "not checked: torch does not work (see the torch line)", "fix torch first", "gpu"
        )
    if not info.get("cuda"):
        if not f.nvml.ok:
            return Check("cuda", bad, "no NVIDIA GPU or driver: training runs on the CPU (slow)",
                         "train on a host with an NVIDIA GPU (in Docker: docker run --gpus all ...)", "gpu")  # fmt: skip
        return Check(
            "cuda", bad, "torch is CPU-only, so CUDA is unused", _pip_torch(f.nvml.cuda_driver), "gpu"
        )
    visible = f.env.get("CUDA_VISIBLE_DEVICES")
    if not info.get("available"):
        why = "; ".join(w.splitlines()[0] for w in info.get("warnings", []))[:300]
        if visible is not None and (
            not gpumod.parse_visible(visible) or visible.strip() in ("-1", "NoDevFiles")
        ):
            return Check("cuda", bad, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU",
                         "unset CUDA_VISIBLE_DEVICES", "gpu")  # fmt: skip
        if not f.nvml.ok:
            return Check("cuda", bad, f"torch is built for CUDA {info['cuda']} but no NVIDIA driver answers "
                         f"({f.nvml.error})", "install the NVIDIA driver (check: nvidia-smi); in Docker: --gpus all",
                         "gpu")  # fmt: skip
        if "too old" in why:
            return Check("cuda", bad, f"CUDA unavailable: {why}", _pip_torch(f.nvml.cuda_driver), "gpu")
        return Check("cuda", bad, f"torch.cuda.is_available() is False: {why or 'no reason given'}",
                     "run nvidia-smi; if it works, reinstall torch: " + _pip_torch(f.nvml.cuda_driver), "gpu")  # fmt: skip
    k = f.steps.get("cuda_kernel")
    if k is None or k.status != "done":
        err = _step_failure(k) if k else "not run"
        m = re.search(r"sm_\d+", err)
        fix = (
            _pip_torch(f.nvml.cuda_driver)
            if "no kernel image" in err
            else "run nvidia-smi; then " + _pip_torch(f.nvml.cuda_driver)
        )
        detail = f"a tiny CUDA kernel failed: {err}" + (f" ({m.group(0)} unsupported)" if m else "")
        return Check("cuda", bad, detail, fix, "gpu")
    devs = k.result.get("devices", [])
    wrong = [d for d in devs if not d.get("ok")]
    if wrong:
        return Check("cuda", bad, f"kernel gave a wrong result on cuda:{wrong[0]['index']} "
                     f"({wrong[0]['value']} != {wrong[0]['expected']})", "run nvidia-smi -q | grep -i ecc; "
                     "try another GPU via CUDA_VISIBLE_DEVICES", "gpu", data=k.result)  # fmt: skip
    ms = max((d["seconds"] for d in devs), default=0) * 1000
    return Check("cuda", OK, f"a tiny kernel ran on {len(devs)} device(s) (slowest {ms:.1f} ms incl. init)",
                 need="gpu", data=k.result)  # fmt: skip


# -------------------------------------------------------------------------------------------------- GPUs


def check_visible(f: Facts) -> Check:
    raw = f.env.get("CUDA_VISIBLE_DEVICES")
    entries = gpumod.parse_visible(raw)
    bad = f.problem("gpu")
    order = f.env.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    if raw is not None and (not entries or raw.strip() in ("-1", "NoDevFiles")):
        return Check("gpu.visible", bad, f"CUDA_VISIBLE_DEVICES={raw!r} hides every GPU",
                     "unset CUDA_VISIBLE_DEVICES", "gpu")  # fmt: skip
    if not f.nvml.ok:
        what = f"CUDA_VISIBLE_DEVICES={raw!r}" if raw is not None else "CUDA_VISIBLE_DEVICES unset"
        return Check("gpu.visible", OK if "gpu" not in f.needs else bad,
                     f"{what}; no NVIDIA driver, so no GPUs to map", "" if "gpu" not in f.needs else
                     "install the NVIDIA driver (check: nvidia-smi); in Docker: --gpus all", "gpu")  # fmt: skip
    gpus = f.nvml.gpus
    if entries:
        for pos, e in enumerate(entries):
            if not e.upper().startswith("MIG-") and gpumod.resolve_entry(e, gpus) is None:
                good = ",".join(str(g.index) for g in gpus)
                return Check("gpu.visible", bad, f"CUDA_VISIBLE_DEVICES={raw!r}: entry {e!r} names no GPU "
                             f"({len(gpus)} present); CUDA ignores it and every entry after it "
                             f"({len(entries) - pos} of {len(entries)})", f"export CUDA_VISIBLE_DEVICES={good}",
                             "gpu")  # fmt: skip
    t = f.torch() or {}
    uuids = [d.get("uuid", "") for d in t.get("devices", [])]
    mapping = gpumod.map_devices(uuids, gpus, entries)
    data = {"CUDA_VISIBLE_DEVICES": raw, "CUDA_DEVICE_ORDER": order,
            "map": [{"cuda": m.cuda_index, "nvidia_smi_index": m.physical, "uuid": m.uuid, "requested": m.requested}
                    for m in mapping]}  # fmt: skip
    names = {g.index: g.name for g in gpus}
    text = ", ".join(f"cuda:{m.cuda_index} -> GPU {m.physical if m.physical is not None else '?'} "
                     f"({names.get(m.physical, '?')})" for m in mapping)  # fmt: skip
    prefix = f"CUDA_VISIBLE_DEVICES={raw!r}" if raw is not None else "CUDA_VISIBLE_DEVICES unset"
    if not mapping:
        return Check("gpu.visible", OK, f"{prefix}; {len(gpus)} GPU(s) per nvidia-smi; torch sees none "
                     "(see the cuda line)", need="gpu", data=data)  # fmt: skip
    # Which nvidia-smi GPU did the user mean for each cuda:i? Index entries mean nvidia-smi numbering to people.
    for m in mapping:
        meant = None
        if entries is None:
            meant = m.cuda_index
        elif m.requested is not None and m.requested.isdigit():
            meant = int(m.requested)
        if meant is not None and m.physical is not None and meant != m.physical and order != "PCI_BUS_ID":
            return Check("gpu.visible", WARN, f"{prefix}: cuda:{m.cuda_index} is nvidia-smi GPU {m.physical}, "
                         f"not GPU {meant}, because CUDA numbers GPUs fastest first ({text})",
                         "export CUDA_DEVICE_ORDER=PCI_BUS_ID", "gpu", data)  # fmt: skip
    return Check("gpu.visible", OK, f"{prefix}: {text}", need="gpu", data=data)


def _arch_supported(cap: list[int] | tuple[int, int], arch_list: list[str]) -> bool:
    """Whether torch ships SASS for this GPU or PTX it can JIT for it."""
    if not arch_list:
        return True
    sm = cap[0] * 10 + cap[1]
    for a in arch_list:
        m = re.match(r"(sm|compute)_(\d+)", a)
        if not m:
            continue
        n = int(m.group(2))
        if m.group(1) == "sm" and n // 10 == sm // 10 and n <= sm:  # same major, binary compatible
            return True
        if m.group(1) == "compute" and n <= sm:
            return True
    return False


def check_gpus(f: Facts) -> list[Check]:
    t = f.torch() or {}
    by_uuid = {gpumod._norm_uuid(g.uuid): g for g in f.nvml.gpus}
    kernel = {d["index"]: d for d in (f.steps["cuda_kernel"].result.get("devices", [])
                                      if f.steps.get("cuda_kernel") else [])}  # fmt: skip
    out = []
    tdevs = t.get("devices", [])
    rows = tdevs or [{"index": g.index, "name": g.name, "uuid": g.uuid, "capability": g.capability,
                      "total_memory": g.memory_total, "nvml_only": True} for g in f.nvml.gpus]  # fmt: skip
    for d in rows:
        g = by_uuid.get(gpumod._norm_uuid(d.get("uuid", "")))
        total = d.get("total_memory") or (g.memory_total if g else None)
        free = kernel.get(d["index"], {}).get("free") if not d.get("nvml_only") else None
        if free is None and g is not None:
            free = g.memory_free
        cap = d.get("capability")
        procs = g.processes if g else []
        label = f"cuda:{d['index']}" if not d.get("nvml_only") else f"nvidia-smi GPU {d['index']}"
        phys = f" = nvidia-smi GPU {g.index}" if g and not d.get("nvml_only") else ""
        ptxt = ", ".join(f"{p['pid']} {p['name']} {_gib(p['memory'])}" for p in procs) or "none"
        detail = (f"{label}{phys}: {d['name']}, {_gib(total)} total, {_gib(free)} free, "
                  f"compute capability {cap[0]}.{cap[1] if cap else '?'}, processes: {ptxt}") if cap else (
                  f"{label}{phys}: {d['name']}, {_gib(total)} total, {_gib(free)} free, processes: {ptxt}")  # fmt: skip
        data = {"name": d["name"], "uuid": d.get("uuid"), "memory_total": total, "memory_free": free,
                "capability": cap, "nvidia_smi_index": g.index if g else None, "processes": procs}  # fmt: skip
        name = f"gpu.{d['index']}"
        if cap and tdevs and not _arch_supported(cap, t.get("arch_list", [])):
            out.append(Check(name, f.problem("gpu"), detail + f"; torch {t.get('version')} has no kernels for "
                             f"sm_{cap[0]}{cap[1]} (it has {' '.join(t.get('arch_list', []))})",
                             _pip_torch(f.nvml.cuda_driver), "gpu", data))  # fmt: skip
        elif free is not None and free < 4 * GiB:
            others = [g2 for g2 in f.nvml.gpus if g2.memory_free >= 8 * GiB]
            fix = (f"export CUDA_VISIBLE_DEVICES={others[0].uuid}  # {others[0].name}, {_gib(others[0].memory_free)} "
                   "free") if others else (f"stop the processes using it (kill {procs[0]['pid']})" if procs else
                   "free GPU memory (nvidia-smi shows who uses it)")  # fmt: skip
            out.append(Check(name, WARN, detail + "; under 4 GiB free: training will run out of memory", fix,
                             "gpu", data))  # fmt: skip
        else:
            out.append(Check(name, OK, detail, need="gpu", data=data))
    return out


def check_driver(f: Facts) -> Check:
    bad = f.problem("gpu")
    if not f.nvml.ok:
        hint = "install the NVIDIA driver (check: nvidia-smi); in Docker run with --gpus all"
        return Check("driver", bad, f"no NVIDIA driver found ({f.nvml.error})", hint, "gpu")
    drv = f"driver {f.nvml.driver} (supports CUDA up to {_ver(f.nvml.cuda_driver)})"
    tcuda = f.torch_cuda()
    if tcuda is None:
        return Check("driver", OK, drv, need="gpu")
    fix = (f"upgrade the NVIDIA driver to one for CUDA >= {_ver(tcuda[:2])}, or match torch to the driver: "
           + _pip_torch(f.nvml.cuda_driver))  # fmt: skip
    dc = f.nvml.cuda_driver or (0, 0)
    if dc[0] < tcuda[0]:
        return Check("driver", bad, f"{drv} is older than torch's CUDA {_ver(tcuda)}: CUDA will not start",
                     fix, "gpu")  # fmt: skip
    if tuple(dc) < tuple(tcuda[:2]):
        return Check("driver", WARN, f"{drv} is older than torch's CUDA {_ver(tcuda)}: runs through minor-version "
                     "compatibility, but PTX built by a newer nvcc will not load", fix, "gpu")  # fmt: skip
    return Check("driver", OK, f"{drv} >= torch's CUDA {_ver(tcuda)}", need="gpu")


# --------------------------------------------------------------------------------------- gsplat toolchain


@dataclass
class GsplatBuild:
    version: str | None
    prebuilt: list[str]
    build_dir: Path | None
    cached: Path | None


def gsplat_build(f: Facts) -> GsplatBuild:
    try:
        version = md.version("gsplat")
    except md.PackageNotFoundError:
        return GsplatBuild(None, [], None, None)
    spec = importlib.util.find_spec("gsplat")
    pkg = Path(spec.origin).parent if spec and spec.origin else None
    prebuilt = [str(p) for p in pkg.glob("csrc*.so")] if pkg else []
    t = f.torch()
    root = f.env.get("TORCH_EXTENSIONS_DIR")
    build_dir = None
    if root:
        build_dir = Path(root) / "gsplat_cuda"
    elif t and t.get("build_root") and not str(t["build_root"]).startswith("error"):
        acc = f"cu{t['cuda'].replace('.', '')}" if t.get("cuda") else "cpu"
        build_dir = Path(t["build_root"]) / f"{t['python_tag']}_{acc}" / "gsplat_cuda"
    cached = None
    if build_dir is not None:
        cached = next(
            (p for p in (build_dir / "gsplat_cuda.so", build_dir / "gsplat_cuda.lib") if p.exists()), None
        )
    return GsplatBuild(version, prebuilt, build_dir, cached)


def _toolkit_fix(f: Facts, want: tuple[int, ...]) -> str:
    local = tc.local_toolkits(want[0])
    if local:
        p = local[0]
        return f"export CUDA_HOME={p} PATH={p}/bin:$PATH"
    return (
        f"conda install -c nvidia cuda-toolkit={_ver(want[:2])} && export CUDA_HOME=$CONDA_PREFIX, "
        f"or: sudo apt install cuda-toolkit-{want[0]}-{want[1] if len(want) > 1 else 0}"
    )


def check_nvcc(f: Facts, build: GsplatBuild) -> Check:
    tcuda = f.torch_cuda()
    built = bool(build.prebuilt or build.cached)
    bad = WARN if built else f.problem("gpu")
    path_note = ""
    if f.nvcc_on_path and f.nvcc and Path(f.nvcc_on_path.path).resolve() != Path(f.nvcc.path).resolve():
        path_note = (f"; the nvcc on PATH ({f.nvcc_on_path.path}, {_ver(f.nvcc_on_path.version)}) is NOT the one "
                     f"used: builds use {f.nvcc.path}")  # fmt: skip
    if f.nvcc is None or f.nvcc.version is None:
        what = "nvcc not found" if f.nvcc is None else f"{f.nvcc.path} does not run ({f.nvcc.output[-160:]})"
        if tcuda is None:
            return Check("nvcc", OK, f"{what}; not needed while torch is CPU-only", need="gpu")
        suffix = " (gsplat's extension is already compiled, so only a rebuild needs it)" if built else (
            ": gsplat cannot compile its CUDA kernels")  # fmt: skip
        return Check("nvcc", bad, what + suffix, _toolkit_fix(f, tcuda), "gpu")
    detail = f"nvcc {_ver(f.nvcc.version)} at {f.nvcc.path}{path_note}"
    data = {"path": f.nvcc.path, "version": _ver(f.nvcc.version)}
    if tcuda is None:
        return Check("nvcc", OK, detail + "; torch is CPU-only, so it is unused", need="gpu", data=data)
    if f.nvcc.version[0] != tcuda[0]:
        return Check("nvcc", bad, f"{detail} does not match torch's CUDA {_ver(tcuda)} (the major version must: "
                     "torch refuses to build gsplat)", _toolkit_fix(f, tcuda) + " -- or install torch for CUDA "
                     f"{_ver(f.nvcc.version)}: {_pip_torch(f.nvcc.version)}", "gpu", data)  # fmt: skip
    if path_note:
        return Check("nvcc", WARN, detail + f"; matches torch's CUDA {_ver(tcuda)}",
                     f"export PATH={Path(f.nvcc.path).parent}:$PATH", "gpu", {**data, "advisory": True})  # fmt: skip
    minor = "" if f.nvcc.version[:2] == tcuda[:2] else " (minor versions differ: fine)"
    return Check("nvcc", OK, f"{detail} matches torch's CUDA {_ver(tcuda)}{minor}", need="gpu", data=data)


def check_cuda_home(f: Facts, build: GsplatBuild) -> Check:
    ch = f.cuda_home
    built = bool(build.prebuilt or build.cached)
    bad = WARN if built else f.problem("gpu")
    if ch.source == "env":
        if ch.path is None or not (ch.path / "bin" / "nvcc").exists():
            good = tc.which("nvcc", f.env)
            fix = (
                f"export {ch.variable}={Path(good).resolve().parent.parent}"
                if good
                else f"unset {ch.variable}"
            )
            return Check("cuda_home", bad if f.torch_cuda() else WARN,
                         f"{ch.variable}={ch.path} has no bin/nvcc", fix, "gpu")  # fmt: skip
        return _headers_check(f, bad, f"{ch.variable}={ch.path}")
    if ch.path is None:
        if f.torch_cuda() is None:
            return Check("cuda_home", OK, "unset, and no CUDA toolkit found (not needed: torch is CPU-only)",
                         need="gpu")  # fmt: skip
        return Check("cuda_home", bad, "unset, and no CUDA toolkit found (no nvcc on PATH, no /usr/local/cuda)",
                     _toolkit_fix(f, f.torch_cuda() or (12, 8)), "gpu")  # fmt: skip
    how = "from the nvcc on PATH" if ch.source == "nvcc-on-path" else "the default"
    return _headers_check(f, bad, f"unset; torch will use {ch.path} ({how})")


def _headers_check(f: Facts, bad: str, detail: str) -> Check:
    """torch adds CUDA_HOME/include to every compile: without cuda_runtime.h there, gsplat's C++ fails."""
    ch = f.cuda_home
    if tc.toolkit_headers(ch.path) is not None:
        return Check("cuda_home", OK, detail, need="gpu")
    real = tc.real_toolkit(f.nvcc.path if f.nvcc else None, f.env)
    fix = (
        f"export CUDA_HOME={real}"
        if real
        else "export CUDA_HOME=<the toolkit folder holding include/cuda_runtime.h>"
    )
    problem_text = f"{detail}, which has no include/cuda_runtime.h (a wrapper nvcc?)"
    if f.torch_cuda() is None:
        return Check("cuda_home", OK, f"{problem_text}; unused while torch is CPU-only (with CUDA torch: {fix})",
                     need="gpu")  # fmt: skip
    return Check("cuda_home", bad, problem_text + ": torch's C++/CUDA builds will not find the CUDA headers",
                 fix, "gpu")  # fmt: skip


def check_host_compiler(f: Facts, build: GsplatBuild) -> Check:
    built = bool(build.prebuilt or build.cached)
    bad = WARN if built else f.problem("gpu")
    h, cxx = f.host, f.cxx
    if h.path is None:
        if f.torch_cuda() is None:
            return Check("host_compiler", OK, f"{h.raw}; not needed while torch is CPU-only", need="gpu")
        return Check("host_compiler", bad, f"no host compiler: {h.raw}",
                     "sudo apt install build-essential", "gpu")  # fmt: skip
    detail = f"{h.kind} {_ver(h.version)} ({h.path}, chosen by {h.chosen_by})"
    if cxx.path and cxx.path != h.path:
        detail += f"; C++: {cxx.kind} {_ver(cxx.version)} ({cxx.path})"
    if f.nvcc is None or f.nvcc.version is None:
        return Check("host_compiler", OK, detail + "; no nvcc to check it against", need="gpu")
    header = tc.host_config_header(f.cuda_home.path) or tc.host_config_header(
        tc.real_toolkit(f.nvcc.path, f.env)
    )
    if h.kind == "clang":
        limit = tc.max_clang_from_header(header) if header else None
        source = str(header) if limit else "unknown"
    else:
        limit = tc.max_gcc_from_header(header) if header else None
        source = str(header) if limit else ""
        if limit is None:
            limit, source = tc.max_gcc_for(f.nvcc.version)
    data = {
        "compiler": h.path,
        "kind": h.kind,
        "version": _ver(h.version),
        "max_major": limit,
        "source": source,
    }
    if limit is None or h.version is None:
        return Check("host_compiler", OK, detail + f"; limit for CUDA {_ver(f.nvcc.version)} unknown",
                     need="gpu", data=data)  # fmt: skip
    too_new = [c for c in (h, cxx) if c.path and c.kind == h.kind and c.version and c.version[0] > limit]
    if too_new:
        c = too_new[0]
        older = tc.installed_gcc_versions(f.env, limit) if h.kind == "gcc" else []
        if older:
            n, path = older[0]
            gxx = tc.which(f"g++-{n}", f.env) or path.replace("gcc", "g++")
            fix = f"export CC={path} CXX={gxx}"
        elif h.kind == "gcc":
            fix = f"sudo apt install gcc-{limit} g++-{limit} && export CC=gcc-{limit} CXX=g++-{limit}"
        else:
            fix = f"export CC=clang-{limit} CXX=clang++-{limit}"
        return Check("host_compiler", bad, f"{detail}: CUDA {_ver(f.nvcc.version)} accepts {h.kind} <= {limit}, "
                     f"{c.path} is {_ver(c.version)}", fix, "gpu", data)  # fmt: skip
    return Check("host_compiler", OK, f"{detail} <= {limit}, the newest CUDA {_ver(f.nvcc.version)} accepts",
                 need="gpu", data=data)  # fmt: skip


def check_ninja(f: Facts, build: GsplatBuild) -> Check:
    if f.ninja:
        _, out = tc.run_text([f.ninja, "--version"], f.env)
        return Check("ninja", OK, f"ninja {out.strip()} at {f.ninja}", need="gpu")
    venv_ninja = Path(sys.executable).parent / "ninja"
    built = bool(build.prebuilt or build.cached)
    status = OK if f.torch_cuda() is None else WARN if built else f.problem("gpu")
    fix = f"export PATH={venv_ninja.parent}:$PATH" if venv_ninja.exists() else "pip install ninja"
    return Check("ninja", status, "ninja not on PATH: torch cannot build C++/CUDA extensions",
                 fix if status != OK else "", "gpu")  # fmt: skip


def check_gsplat(f: Facts, build: GsplatBuild, toolchain: list[Check]) -> Check:
    if build.version is None:
        return Check(
            "gsplat", f.problem("gpu"), "gsplat is not installed", 'pip install "gsplat==1.5.3"', "gpu"
        )
    data = {"version": build.version, "prebuilt": build.prebuilt,
            "build_dir": str(build.build_dir) if build.build_dir else None,
            "cached": str(build.cached) if build.cached else None}  # fmt: skip
    pin = "" if build.version == "1.5.3" else " (splatforge is tested with 1.5.3)"
    if build.prebuilt:
        return Check("gsplat", OK, f"gsplat {build.version}{pin}: prebuilt CUDA extension {build.prebuilt[0]}",
                     need="gpu", data=data)  # fmt: skip
    if f.torch() is None:
        return Check("gsplat", f.problem("gpu"), f"gsplat {build.version}{pin}: not checked, torch does not work",
                     "fix the torch line first", "gpu", data)  # fmt: skip
    if f.torch_cuda() is None:
        fix = _pip_torch(f.nvml.cuda_driver) if f.nvml.ok else "train on a host with an NVIDIA GPU"
        return Check("gsplat", f.problem("gpu"), f"gsplat {build.version}{pin}: CUDA extension unusable with a "
                     "CPU-only torch", fix, "gpu", data)  # fmt: skip
    if build.cached:
        when = dt.datetime.fromtimestamp(build.cached.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        return Check("gsplat", OK, f"gsplat {build.version}{pin}: CUDA extension compiled at {build.cached} "
                     f"({when})", need="gpu", data=data)  # fmt: skip
    broken = [c.name for c in toolchain if c.status != OK and not c.data.get("advisory")]
    if broken:
        return Check("gsplat", f.problem("gpu"), f"gsplat {build.version}{pin}: CUDA extension not compiled yet "
                     f"and cannot be ({', '.join(broken)} above)", f"fix the {', '.join(broken)} line(s), then: "
                     "splatforge doctor --deep", "gpu", data)  # fmt: skip
    return Check("gsplat", WARN, f"gsplat {build.version}{pin}: CUDA extension not compiled yet (expected in "
                 f"{build.build_dir}); the first GPU training compiles it for several minutes",
                 "splatforge doctor --deep --gpu   # compiles it now", "gpu", data)  # fmt: skip


def check_gsplat_render(f: Facts, steps: dict[str, StepResult], build: GsplatBuild) -> Check:
    bad = f.problem("gpu")
    imp, r = steps["import:gsplat"], steps["gsplat_render"]
    rebuild = (f"rm -rf {build.build_dir} && splatforge doctor --deep --gpu" if build.build_dir
               else "splatforge doctor --deep --gpu")  # fmt: skip
    if imp.status != "done":
        fix = 'pip install "numpy<2"' if _numpy_abi(imp) else 'pip install --force-reinstall "gsplat==1.5.3"'
        return Check("gsplat.render", bad, f"import gsplat failed: {_step_failure(imp)}", fix, "gpu")
    if r.status != "done":
        err = _step_failure(r)
        tail = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()][-1:]
        detail = f"loading/compiling gsplat's CUDA extension failed: {err}" + (
            f" | {tail[0][:300]}" if tail else ""
        )
        return Check("gsplat.render", bad, detail, "fix the nvcc/host_compiler/ninja lines, then: " + rebuild,
                     "gpu")  # fmt: skip
    res = r.result
    if res.get("skipped"):
        return Check("gsplat.render", bad, f"not run: {res['skipped']}",
                     "run on a host with an NVIDIA GPU" if bad == FAIL else "", "gpu")  # fmt: skip
    if not res.get("ok"):
        msg = (
            res.get("error")
            or f"the rendered tile is wrong (center {res.get('center_rgb')}, corner alpha "
            f"{res.get('corner_alpha')})"
        )
        return Check("gsplat.render", bad, msg, rebuild, "gpu", data=res)
    return Check("gsplat.render", OK, f"extension loaded in {res['load_seconds']:.1f} s; one 16x16 tile rendered "
                 f"(center rgb {[round(c, 2) for c in res['center_rgb']]})", need="gpu", data=res)  # fmt: skip


# ------------------------------------------------------------------------------------------- libraries


def check_pycolmap(f: Facts) -> Check:
    imp, info = f.steps["import:pycolmap"], f.steps["pycolmap_info"]
    if imp.status != "done":
        fix = 'pip install "numpy<2"' if _numpy_abi(imp) else "pip install --force-reinstall pycolmap"
        return Check("pycolmap", FAIL, f"import pycolmap failed: {_step_failure(imp)}", fix)
    version = (info.result.get("version") if info.status == "done" else None) or imp.result.get("version")
    has_cuda = bool(info.result.get("has_cuda")) if info.status == "done" else False
    data = {"version": version, "has_cuda": has_cuda}
    v = tc.parse_version(version)
    if v and v < (3, 12):
        return Check("pycolmap", FAIL, f"pycolmap {version} is older than 3.12", 'pip install -U "pycolmap>=3.12"',
                     data=data)  # fmt: skip
    if has_cuda:
        return Check("pycolmap", OK, f"pycolmap {version} with GPU SIFT (CUDA)", data=data)
    detail = f"pycolmap {version}: CPU SIFT only (this build has no CUDA)"
    if "gpu" in f.needs and f.nvml.gpus:
        return Check("pycolmap", WARN, detail + "; feature extraction is several times slower than on the GPU",
                     f"pip uninstall -y pycolmap && pip install pycolmap-cuda12=={version}", data=data)  # fmt: skip
    return Check("pycolmap", OK, detail, data=data)


def _numpy_requirement_conflicts(numpy_version: str) -> list[str]:
    """Installed distributions whose declared numpy requirement the installed numpy violates."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:
        return []
    have = Version(numpy_version)
    out = []
    for dist in md.distributions():
        for req in dist.requires or []:
            if not req.lower().startswith("numpy"):
                continue
            try:
                r = Requirement(req)
            except Exception:
                continue
            if r.name.lower() != "numpy" or (r.marker and not r.marker.evaluate({"extra": ""})):
                continue
            if r.specifier and not r.specifier.contains(have, prereleases=True):
                out.append(f"{dist.metadata['Name']} {dist.version} needs numpy{r.specifier}")
    return sorted(set(out))


def check_numpy(f: Facts) -> Check:
    imp = f.steps["import:numpy"]
    if imp.status != "done":
        return Check(
            "numpy", FAIL, f"import numpy failed: {_step_failure(imp)}", "pip install --force-reinstall numpy"
        )
    version = imp.result.get("version") or "?"
    abi = [s.split(":", 1)[1] for s, r in f.steps.items() if s.startswith("import:") and r.status != "done"
           and _numpy_abi(r)]  # fmt: skip
    if abi:
        major2 = (tc.parse_version(version) or (0,))[0] >= 2
        fix = 'pip install "numpy<2"' if major2 else "pip install -U " + " ".join(
            LIBS.get(m, (m, ""))[0] for m in abi)  # fmt: skip
        return Check("numpy", FAIL, f"NumPy {version}, but {', '.join(abi)} was compiled against another NumPy "
                     "major version", fix)  # fmt: skip
    conflicts = _numpy_requirement_conflicts(version)
    if conflicts:
        fix = 'pip install "numpy<2"' if any("<2" in c for c in conflicts) else "pip install -U " + " ".join(
            c.split()[0] for c in conflicts)  # fmt: skip
        return Check("numpy", WARN, f"NumPy {version}; declared requirements not met: {'; '.join(conflicts)[:300]}",
                     fix, data={"conflicts": conflicts})  # fmt: skip
    return Check(
        "numpy", OK, f"NumPy {version}; every compiled package imported with it", data={"version": version}
    )


def check_libs(f: Facts) -> list[Check]:
    out = []
    for mod, (dist, need) in LIBS.items():
        r = f.steps[f"import:{mod}"]
        if r.status == "done":
            version = r.result.get("version")
            if not version:
                try:
                    version = md.version(dist)
                except md.PackageNotFoundError:
                    version = ""
            out.append(Check(f"import.{mod}", OK, f"{mod} {version}".strip(), need=need))
            continue
        fix = 'pip install "numpy<2"' if _numpy_abi(r) else f"pip install --force-reinstall {dist}"
        verb = "crashed the interpreter" if r.status == "crashed" else "failed"
        out.append(
            Check(f"import.{mod}", f.problem(need), f"import {mod} {verb}: {_step_failure(r)}", fix, need)
        )
    return out


def check_video(f: Facts) -> list[Check]:
    r = f.steps["av_decode"]
    out = []
    for codec in ("h264", "hevc"):
        label = "H.264" if codec == "h264" else "HEVC"
        name = f"video.{codec}"
        if r.status != "done":
            out.append(Check(name, f.problem("video"), f"not checked: {_step_failure(r)}",
                             'pip install --force-reinstall "av>=12"', "video"))  # fmt: skip
            continue
        res = r.result.get(codec, {})
        if res.get("ok"):
            out.append(
                Check(name, OK, f"PyAV decodes {label} ({res.get('decoder')})", need="video", data=res)
            )
        else:
            why = res.get("error") or f"wrong pixels (left {res.get('left')}, right {res.get('right')})"
            out.append(Check(name, f.problem("video"), f"PyAV cannot decode {label}: {why}",
                             'pip install --force-reinstall "av>=12"  # PyPI wheels bundle FFmpeg with both decoders',
                             "video", res))  # fmt: skip
    return out


def check_viewer(f: Facts) -> Check:
    pkg = VIEWER_ASSETS / "package.json"
    web = VIEWER_ASSETS.parents[2]
    if pkg.is_file():
        try:
            version = json.loads(pkg.read_text()).get("version", "?")
        except (OSError, ValueError):
            version = "?"
        return Check(
            "viewer.assets", OK, f"@sparkjsdev/spark {version} in {VIEWER_ASSETS.parent}", need="viewer"
        )
    return Check("viewer.assets", f.problem("viewer"), f"the viewer's npm assets are missing ({VIEWER_ASSETS})",
                 f"npm --prefix {web} install", "viewer")  # fmt: skip


def check_lpips(env: dict[str, str]) -> Check:
    """LPIPS in the hold-out metrics: optional (a run without it reports PSNR and SSIM), so never a failure."""
    from splatforge.splat import lpips_files

    files = lpips_files.check_files(env)
    if files.problem is None:
        path = lpips_files.alexnet_weights(env)
        return Check("metrics.lpips", OK, f"LPIPS(alex) weights: {path} ({path.stat().st_size / 1e6:.0f} MB)",
                     data={"path": str(path)})
    return Check("metrics.lpips", WARN, f"hold-out LPIPS will not be reported: {files.problem}", files.fix,
                 data={"folder": str(lpips_files.torch_hub_checkpoints(env))})


# ---------------------------------------------------------------------------------------------- system


def check_disk(workspace: Path) -> Check:
    ws = Path(workspace)
    probe = ws
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    detail = f"{_gib(usage.free)} free of {_gib(usage.total)} at {ws}"
    data = {"free": usage.free, "total": usage.total, "path": str(ws)}
    if usage.free < 2 * GiB:
        return Check("disk", FAIL, detail + ": a run needs a few GiB (frames, images, checkpoints)",
                     f"free space on the disk holding {probe}, or work in a folder on a larger disk", data=data)  # fmt: skip
    if usage.free < 20 * GiB:
        return Check("disk", WARN, detail + ": enough for a few runs only",
                     f"free space on the disk holding {probe} (du -sh {probe}/* | sort -h)", data=data)  # fmt: skip
    return Check("disk", OK, detail, data=data)


def check_ram() -> Check:
    import psutil

    vm = psutil.virtual_memory()
    detail = f"{_gib(vm.available)} available of {_gib(vm.total)}"
    data = {"total": vm.total, "available": vm.available}
    if vm.available < 2 * GiB:
        return Check("ram", FAIL, detail + ": pose estimation and training need several GiB",
                     "close other programs, or run on a machine with more memory", data=data)  # fmt: skip
    if vm.total < 8 * GiB:
        return Check("ram", WARN, detail + ": large captures (hundreds of photos) may not fit",
                     "use fewer or smaller images, or a machine with >= 16 GiB", data=data)  # fmt: skip
    return Check("ram", OK, detail, data=data)


def check_shm(path: str = "/dev/shm") -> Check:
    try:
        st = os.statvfs(path)
    except OSError:
        return Check("shm", WARN, f"{path} does not exist (splatforge needs none; Ray and PyTorch DataLoader "
                     "workers use it)", "docker run --shm-size=8g ... (or --ipc=host)", "info")  # fmt: skip
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    detail = f"{path}: {_gib(size)} ({_gib(free)} free); splatforge needs none"
    data = {"size": size, "free": free}
    if size < 1 * GiB:
        return Check("shm", WARN, detail + f", but Ray's object store and DataLoader workers fail or slow down with "
                     f"{size // 1024**2} MiB", "docker run --shm-size=8g ... (or --ipc=host; Kubernetes: an "
                     "emptyDir with medium: Memory on /dev/shm)", "info", data)  # fmt: skip
    return Check("shm", OK, detail, need="info", data=data)


# --------------------------------------------------------------------------------------------- service


def _with_timeout(fn, timeout: float):
    """Run fn() in a daemon thread; (result, error). A hang becomes a TimeoutError, not a stuck doctor."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, TimeoutError(f"no answer within {timeout:.0f} s")
    return box.get("value"), box.get("error")


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def check_db(env: dict[str, str], needs: frozenset[str], timeout_s: float = 3.0) -> Check:
    url = env.get("SPLATFORGE_DB")
    if not url:
        return Check("service.db", OK, "SPLATFORGE_DB unset (the job service uses its default)", need="serve")
    bad = problem("serve", needs)
    shown = _redact(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path in ("", ":memory:"):
            return Check("service.db", OK, f"{shown}: in-memory SQLite", need="serve")
        p = Path(path)
        if p.exists():

            def ping():
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=timeout_s)
                try:
                    return con.execute("select count(*) from sqlite_master").fetchone()[0]
                finally:
                    con.close()

            n, err = _with_timeout(ping, timeout_s)
            if err:
                return Check("service.db", bad, f"{shown}: cannot read the SQLite file: {err}",
                             f"check the file: sqlite3 {p} 'pragma integrity_check'", "serve")  # fmt: skip
            return Check(
                "service.db", OK, f"{shown}: SQLite file readable ({n} schema objects)", need="serve"
            )
        if not p.parent.is_dir() or not os.access(p.parent, os.W_OK):
            return Check("service.db", bad, f"{shown}: folder {p.parent} is missing or not writable",
                         f"mkdir -p {p.parent}", "serve")  # fmt: skip
        return Check("service.db", OK, f"{shown}: SQLite file will be created in {p.parent}", need="serve")

    def connect():
        import sqlalchemy

        scheme = urlparse(url).scheme
        args = {"connect_timeout": max(1, int(timeout_s))} if scheme.startswith(
            ("postgres", "mysql")) else {}  # fmt: skip
        engine = sqlalchemy.create_engine(url, connect_args=args, pool_pre_ping=False)
        try:
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.text("select 1")).scalar()
        finally:
            engine.dispose()

    _, err = _with_timeout(connect, timeout_s + 1)
    if err:
        msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        fix = (
            "pip install 'psycopg[binary]'"
            if "No module named" in msg
            else (
                f"check SPLATFORGE_DB (host, port, password) and that the database is up: psql '{shown}' -c 'select 1'"
            )
        )
        return Check("service.db", bad, f"{shown}: cannot connect: {type(err).__name__}: {msg}", fix, "serve")
    return Check("service.db", OK, f"{shown}: connected (select 1)", need="serve")


def check_ray(env: dict[str, str], needs: frozenset[str], timeout_s: float = 3.0) -> Check:
    addr = env.get("SPLATFORGE_RAY_ADDRESS")
    if not addr:
        return Check("service.ray", OK, "SPLATFORGE_RAY_ADDRESS unset (jobs run in-process)", need="serve")
    bad = problem("serve", needs)
    if addr in ("local",):
        return Check("service.ray", OK, f"{addr}: a local Ray instance is started on demand", need="serve")
    target = addr
    if addr == "auto":
        current = Path(env.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        if not current.is_file():
            return Check("service.ray", bad, "SPLATFORGE_RAY_ADDRESS=auto but no Ray cluster runs on this machine",
                         "ray start --head", "serve")  # fmt: skip
        target = current.read_text().strip()
    scheme_default = 10001 if target.startswith("ray://") else 6379
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, str(scheme_default)
    try:
        port_n = int(port)
    except ValueError:
        return Check("service.ray", bad, f"SPLATFORGE_RAY_ADDRESS={addr!r} is not host:port or ray://host:port",
                     "export SPLATFORGE_RAY_ADDRESS=ray://HEAD_HOST:10001", "serve")  # fmt: skip
    try:
        with socket.create_connection((host, port_n), timeout=timeout_s):
            pass
    except OSError as exc:
        return Check("service.ray", bad, f"SPLATFORGE_RAY_ADDRESS={addr}: {host}:{port_n} unreachable ({exc})",
                     "start the cluster (ray start --head) or fix SPLATFORGE_RAY_ADDRESS", "serve")  # fmt: skip
    return Check("service.ray", OK, f"SPLATFORGE_RAY_ADDRESS={addr}: {host}:{port_n} accepts connections",
                 need="serve")  # fmt: skip


# --------------------------------------------------------------------------------------------------- run


def run_checks(
    deep: bool = False,
    uses: tuple[str, ...] | list[str] = ("cpu",),
    workspace: Path | str | None = None,
    options: DoctorOptions | None = None,
) -> list[Check]:
    """Run every check and return them in report order.

    `options` overrides the other arguments when given. Nothing here raises for a broken environment:
    each problem is a `Check` with status warn or fail (fail when `uses` needs what is broken).
    """
    opts = options or DoctorOptions(uses=tuple(uses), deep=deep,
                                    workspace=Path(workspace) if workspace else Path.cwd())  # fmt: skip
    env = opts.environ()
    needs = opts.needs()
    with ThreadPoolExecutor(max_workers=4) as pool:
        torch_fut = pool.submit(run_probe, TORCH_STEPS, env, opts.probe_timeout_s)
        libs_fut = pool.submit(run_probe, LIB_STEPS, env, opts.probe_timeout_s)
        nvml = gpumod.read_nvml()
        cuda_home = tc.find_cuda_home(env)
        nvcc_path = str(cuda_home.path / "bin" / "nvcc") if cuda_home.path else None
        nvcc = tc.nvcc_version(nvcc_path, env) if nvcc_path and os.path.exists(nvcc_path) else None
        on_path = tc.which("nvcc", env)
        nvcc_on_path = tc.nvcc_version(on_path, env) if on_path else None
        if nvcc is None and cuda_home.source != "env" and nvcc_on_path:
            nvcc = nvcc_on_path
        host = tc.host_compiler(env)
        cxx_env = dict(env, CC=env.get("CXX") or "c++")
        cxx = tc.host_compiler(cxx_env)
        steps = {**torch_fut.result(), **libs_fut.result()}
    f = Facts(opts, env, needs, steps, nvml, cuda_home, nvcc, nvcc_on_path, host, cxx, tc.which("ninja", env))
    build = gsplat_build(f)
    toolchain = [check_nvcc(f, build), check_cuda_home(f, build), check_host_compiler(f, build),
                 check_ninja(f, build)]  # fmt: skip
    checks = [
        check_python(f),
        check_torch(f),
        check_cuda(f),
        check_visible(f),
        *check_gpus(f),
        check_driver(f),
    ]
    checks += toolchain
    checks.append(check_gsplat(f, build, toolchain))
    if opts.deep:
        deep_steps = run_probe(DEEP_STEPS, env, opts.deep_timeout_s)
        checks.append(check_gsplat_render(f, deep_steps, gsplat_build(f)))
    checks += [check_pycolmap(f), check_numpy(f), *check_libs(f), *check_video(f), check_viewer(f),
               check_lpips(env)]
    checks += [check_disk(opts.workspace), check_ram(), check_shm()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        db = pool.submit(check_db, env, needs, opts.service_timeout_s)
        ray = pool.submit(check_ray, env, needs, opts.service_timeout_s)
        checks += [db.result(), ray.result()]
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 when nothing the requested use needs is broken (no fail), 1 otherwise."""
    return 1 if any(c.status == FAIL for c in checks) else 0
