"""PlayCanvas splat-transform (npm `@playcanvas/splat-transform`), run as a Node.js subprocess.

It writes SOG and SPZ (the latter through `@adobe/spz`, Niantic's reference SPZ library built for
WebAssembly) and reads every format splatforge writes. No maintained Python package does either:
PyPI's `spz` is a Rust source package that needs crates.io to build, and nothing there writes SOG.
The package is installed with the viewer's npm assets (src/splatforge/viewer/web, by ./setup.sh).
"""

from __future__ import annotations

import ctypes.util
import functools
import shutil
import subprocess
from pathlib import Path

from splatforge.errors import InputError, SplatforgeError

PACKAGE = "@playcanvas/splat-transform"
SETUP_ADVICE = ("run ./setup.sh in the splatforge checkout (it runs `npm ci` in src/splatforge/viewer/web; "
                "needs Node.js and npm)")


def node_modules_dir() -> Path:
    """Where ./setup.sh installs the npm packages (the viewer's web folder; see viewer/server.py)."""
    return Path(__file__).resolve().parents[2] / "viewer" / "web" / "node_modules"


def find_node() -> str | None:
    return shutil.which("node")


def missing(what: str = "this format") -> InputError | None:
    """What is missing to run splat-transform (Node.js or the npm package), or None when it can run."""
    try:
        command(what)
    except InputError as exc:
        return exc
    return None


def command(what: str) -> list[str]:
    """`node .../cli.mjs`, or an InputError saying what is missing. `what` names the caller's need."""
    node = find_node()
    if node is None:
        raise InputError(f"{what} needs Node.js, which is not installed (no `node` on PATH)",
                         "install Node.js 20 or newer with npm (Debian: apt-get install nodejs npm), then "
                         + SETUP_ADVICE)
    cli = node_modules_dir() / PACKAGE / "bin" / "cli.mjs"
    if not cli.is_file():
        raise InputError(f"{what} needs the npm package {PACKAGE}, which is not installed ({cli} is missing)",
                         SETUP_ADVICE)
    return [node, str(cli)]


@functools.cache
def webgpu_possible() -> bool:
    """Whether splat-transform could find a GPU: on Linux its WebGPU (Dawn) needs the Vulkan loader.

    Without one it fails instead of falling back to the CPU, so callers pass `-g cpu` then.
    """
    return ctypes.util.find_library("vulkan") is not None


def run(args: list[str], what: str, timeout: float | None = None) -> None:
    """Run splat-transform with `args`; a failure raises a SplatforgeError with its last output lines."""
    cmd = [*command(what), "--quiet", "--overwrite", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SplatforgeError(f"{what}: splat-transform did not finish within {timeout:.0f} s",
                              "try again with a smaller splat or another format") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        raise SplatforgeError(f"{what}: splat-transform failed (exit {done.returncode}): "
                              + " | ".join(lines[-4:]),
                              f"check that Node.js is version 20 or newer (`node --version`); {SETUP_ADVICE}")


def convert(src: Path, dst: Path, what: str, extra: list[str] | None = None) -> Path:
    """`splat-transform src dst`: the formats are taken from the file names (and src's content).

    SOG output clusters the spherical harmonics with k-means on a GPU when WebGPU finds one, else on
    the CPU (`-g cpu`); a GPU attempt that fails is retried on the CPU.
    """
    extra = list(extra or [])
    wants_gpu = str(dst).endswith(".sog") and webgpu_possible()
    try:
        run([*extra, *([] if wants_gpu else ["--gpu", "cpu"]), str(src), str(dst)], what)
    except SplatforgeError:
        if not wants_gpu:
            raise
        run([*extra, "--gpu", "cpu", str(src), str(dst)], what)
    return Path(dst)
