"""Checks that import heavy or possibly broken modules, run in a child process.

A compiled extension built against another NumPy, or a CUDA library that does not match the driver,
can segfault on import. Running those imports here, one step at a time with a JSON line before and
after each, lets the parent name the step that crashed and go on with the others in a new child.

Child side: `python -c <runner> STEP...` prints one JSON object per line:
`{"step": s, "event": "start"}` then `{"step": s, "event": "done", "result": {...}}` or
`{"step": s, "event": "error", "error": "Type: message", "stderr": "..."}`.
This file imports only the standard library at top level, so the parent can import it too.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field

# One 64x64 frame, left half RGB 200, right half RGB 40, encoded by libx264 / libx265 (SEI messages
# with the encoder settings removed). Decoding them proves the decoder works, not just that it is listed.
H264_FRAME = base64.b64decode(
    "AAAAAWdCwAraEJoQAAADABAAAAMDIPEiagAAAAABaM4EcgAAAAFliIQ6JigACDNJyYoAAiMybrrrdddddddddeA="
)
HEVC_FRAME = base64.b64decode(
    "AAAAAUABDAH//wFgAAADAJAAAAMAAAMAHpWUCQAAAAABQgEBAWAAAAMAkAAAAwAAAwAeoCCBBZZWVKTC5oCAAAADAIAAAAyEAAAAAAFEAcBz"
    "wIkAAAABKAGsJYAQCqwEw/+xDUX4"
)

# step -> the step it needs (skipped when that one failed or crashed)
DEPENDS_ON = {
    "torch_info": "import:torch",
    "cuda_kernel": "import:torch",
    "import:gsplat": "import:torch",
    "gsplat_render": "import:torch",
    "pycolmap_info": "import:pycolmap",
    "av_decode": "import:av",
}


def _version(module) -> str | None:
    return str(getattr(module, "__version__", None) or getattr(module, "VERSION", None) or "") or None


def step_import(name: str) -> dict:
    module = importlib.import_module(name)
    return {"version": _version(module), "file": getattr(module, "__file__", None)}


def step_torch_info() -> dict:
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if available else 0
    devices = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": props.name,
                "uuid": str(getattr(props, "uuid", "") or ""),
                "capability": [props.major, props.minor],
                "total_memory": int(props.total_memory),
            }
        )
    build_root = None
    try:
        from torch.utils.cpp_extension import get_default_build_root

        build_root = get_default_build_root()
    except Exception as exc:  # cpp_extension itself can fail to import on a broken install
        build_root = f"error: {exc}"
    cudnn = None
    with contextlib.suppress(Exception):
        cudnn = torch.backends.cudnn.version() if available else None
    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": cudnn,
        "available": available,
        "count": count,
        "arch_list": list(torch.cuda.get_arch_list()) if available else [],
        "devices": devices,
        "build_root": build_root,
        "python_tag": f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}",
        "warnings": [str(w.message) for w in caught],
    }


def step_cuda_kernel() -> dict:
    """Run a tiny kernel on every visible device and read free memory."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    results = []
    for i in range(torch.cuda.device_count()):
        start = time.perf_counter()
        x = torch.arange(1 << 16, device=f"cuda:{i}", dtype=torch.float32)
        total = float((x * 2).sum().item())
        torch.cuda.synchronize(i)
        expected = float(2 * ((1 << 16) - 1) * (1 << 16) / 2)
        free, total_mem = torch.cuda.mem_get_info(i)
        results.append(
            {
                "index": i,
                "ok": abs(total - expected) < 1e-3 * expected,
                "value": total,
                "expected": expected,
                "seconds": time.perf_counter() - start,
                "free": int(free),
                "total": int(total_mem),
            }
        )
    return {"devices": results}


def step_pycolmap_info() -> dict:
    import pycolmap

    return {"version": _version(pycolmap), "has_cuda": bool(getattr(pycolmap, "has_cuda", False))}


def _decode(codec: str, data: bytes) -> dict:
    import av

    ctx = av.CodecContext.create(codec, "r")
    frames = []
    for packet in ctx.parse(data):
        frames += ctx.decode(packet)
    for packet in ctx.parse(None):
        frames += ctx.decode(packet)
    frames += ctx.decode(None)
    if not frames:
        return {"ok": False, "error": "decoder returned no frame"}
    rgb = frames[0].to_ndarray(format="rgb24")
    left, right = float(rgb[:, :32].mean()), float(rgb[:, 32:].mean())
    ok = rgb.shape == (64, 64, 3) and abs(left - 200) < 12 and abs(right - 40) < 12
    return {"ok": ok, "shape": list(rgb.shape), "left": left, "right": right, "decoder": ctx.codec.name}


def step_av_decode() -> dict:
    out = {}
    for codec, data in (("h264", H264_FRAME), ("hevc", HEVC_FRAME)):
        try:
            out[codec] = _decode(codec, data)
        except Exception as exc:
            out[codec] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


def step_gsplat_render() -> dict:
    """Load (compiling if needed) gsplat's CUDA extension and render one 16x16 tile with one Gaussian."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    start = time.perf_counter()
    from gsplat.cuda._backend import _C

    if _C is None:
        return {"ok": False, "error": "gsplat found no CUDA toolkit, so its extension was not built"}
    loaded = time.perf_counter() - start
    from gsplat import rasterization

    dev = "cuda"
    means = torch.tensor([[0.0, 0.0, 3.0]], device=dev)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=dev)
    scales = torch.full((1, 3), 0.3, device=dev)
    opacities = torch.tensor([0.9], device=dev)
    colors = torch.tensor([[1.0, 0.2, 0.1]], device=dev)
    viewmats = torch.eye(4, device=dev)[None]
    ks = torch.tensor([[[16.0, 0.0, 8.0], [0.0, 16.0, 8.0], [0.0, 0.0, 1.0]]], device=dev)
    image, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats, ks, 16, 16)
    torch.cuda.synchronize()
    center = image[0, 8, 8].tolist()
    corner_alpha = float(alpha[0, 0, 0, 0])
    ok = (
        bool(torch.isfinite(image).all()) and center[0] > 0.5 and center[0] > center[2] and corner_alpha < 0.5
    )
    return {
        "ok": ok,
        "center_rgb": center,
        "center_alpha": float(alpha[0, 8, 8, 0]),
        "corner_alpha": corner_alpha,
        "load_seconds": loaded,
        "render_seconds": time.perf_counter() - start - loaded,
        "extension": getattr(_C, "__file__", None),
    }


STEPS = {
    "torch_info": step_torch_info,
    "cuda_kernel": step_cuda_kernel,
    "pycolmap_info": step_pycolmap_info,
    "av_decode": step_av_decode,
    "gsplat_render": step_gsplat_render,
}


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def child_main(steps: list[str]) -> None:
    failed: set[str] = set()
    for step in steps:
        if DEPENDS_ON.get(step) in failed:
            failed.add(step)
            _emit({"step": step, "event": "error", "error": f"skipped: {DEPENDS_ON[step]} failed"})
            continue
        _emit({"step": step, "event": "start"})
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                if step.startswith("import:"):
                    result = step_import(step.split(":", 1)[1])
                else:
                    result = STEPS[step]()
            _emit({"step": step, "event": "done", "result": result, "stderr": err.getvalue()[-2000:]})
        except BaseException as exc:  # noqa: BLE001 - report everything, SystemExit included
            failed.add(step)
            message = f"{type(exc).__name__}: {exc}"
            _emit({"step": step, "event": "error", "error": message, "stderr": err.getvalue()[-2000:]})


# ---------------------------------------------------------------------------------------------- parent side

# `python -c` puts the current folder first on sys.path; drop it so a stray ./numpy cannot shadow numpy.
_RUNNER = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p != '']; "
    "runpy.run_path({path!r}, run_name='__probe__')"
)


@dataclass
class StepResult:
    """The outcome of one probe step. `status`: done | error | crashed | timeout | skipped."""

    step: str
    status: str
    result: dict = field(default_factory=dict)
    error: str = ""
    stderr: str = ""
    seconds: float = 0.0


def _signal_name(code: int) -> str:
    import signal

    with contextlib.suppress(ValueError):
        return signal.Signals(-code).name
    return f"signal {-code}"


def run_probe(
    steps: list[str], env: dict[str, str], timeout_s: float, python: str | None = None, max_restarts: int = 6
) -> dict[str, StepResult]:
    """Run `steps` in child processes; a crash or hang ends only the step it happened in.

    Each child gets `env` as its whole environment. `timeout_s` bounds the whole probe.
    """
    python = python or sys.executable
    results: dict[str, StepResult] = {}
    pending = list(steps)
    deadline = time.monotonic() + timeout_s
    for _ in range(max_restarts + 1):
        pending = [s for s in pending if s not in results]
        for step in list(pending):  # skip steps whose dependency already failed in an earlier child
            dep = DEPENDS_ON.get(step)
            if dep in results and results[dep].status != "done":
                results[step] = StepResult(step, "skipped", error=f"skipped: {dep} did not work")
                pending.remove(step)
        if not pending:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for step in pending:
                results[step] = StepResult(step, "timeout", error="not run: the probe ran out of time")
            break
        code = _RUNNER.format(path=os.path.abspath(__file__))
        proc = subprocess.Popen(
            [python, "-c", code, *pending],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            errors="replace",
        )
        started = time.monotonic()
        timed_out = False
        try:
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        in_flight = None
        step_start = started
        for line in out.splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printed to stdout
            step = msg.get("step")
            if msg.get("event") == "start":
                in_flight, step_start = step, time.monotonic()
            elif msg.get("event") == "done":
                results[step] = StepResult(
                    step, "done", msg.get("result") or {}, stderr=msg.get("stderr", "")
                )
                in_flight = None
            elif msg.get("event") == "error":
                status = "skipped" if msg.get("error", "").startswith("skipped:") else "error"
                results[step] = StepResult(step, status, error=msg["error"], stderr=msg.get("stderr", ""))
                in_flight = None
        if in_flight is not None:
            if timed_out:
                results[in_flight] = StepResult(
                    in_flight, "timeout", error=f"did not finish within {timeout_s:.0f} s", stderr=err[-2000:]
                )
            else:
                how = _signal_name(proc.returncode) if proc.returncode < 0 else f"exit code {proc.returncode}"
                results[in_flight] = StepResult(
                    in_flight, "crashed", error=f"the process died ({how})", stderr=err[-2000:]
                )
            results[in_flight].seconds = time.monotonic() - step_start
        elif timed_out:
            for step in pending:
                results.setdefault(step, StepResult(step, "timeout", error="not run: the probe timed out"))
        elif proc.returncode != 0 and not any(s in results for s in pending):
            for step in pending:  # the interpreter itself did not start
                results[step] = StepResult(step, "crashed", error=f"python failed to start: {err[-500:]}")
    for step in steps:
        results.setdefault(step, StepResult(step, "crashed", error="not run: too many crashes"))
    return results


if __name__ == "__probe__":
    child_main(sys.argv[1:])
