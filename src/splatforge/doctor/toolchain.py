"""The toolchain that builds gsplat's CUDA extension: nvcc, CUDA_HOME, the host compiler, ninja.

gsplat 1.5.3 (gsplat/cuda/_backend.py) first tries a prebuilt `gsplat.csrc`; without it, it JIT-compiles
`gsplat_cuda` through `torch.utils.cpp_extension` into `_get_build_directory("gsplat_cuda")`, i.e.
`$TORCH_EXTENSIONS_DIR/gsplat_cuda` or `<user cache>/torch_extensions/py311_cu128/gsplat_cuda`, and
loads `gsplat_cuda.so` from there when it already exists. torch finds the toolkit like `_find_cuda_home`:
`CUDA_HOME` or `CUDA_PATH`, else the `nvcc` on PATH, else /usr/local/cuda; it compiles .cpp files with
`$CXX` (default `c++`), passes `-ccbin $CC` to nvcc when CC is set, and runs `ninja` from PATH.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Newest GCC major each CUDA release accepts as host compiler. Source: `CUDA_GCC_VERSIONS` in
# torch/utils/cpp_extension.py (torch 2.13, which takes it from https://gist.github.com/ax3l/9489132 and
# each toolkit's include/crt/host_config.h); 11.8 from the CUDA 11.8 Linux installation guide; 13.0
# checked against host_config.h of CUDA 13.0.88 (`#if __GNUC__ > 15`). When the toolkit is installed,
# its own host_config.h is read instead (`max_gcc_from_header`), so this table is only a fallback.
MAX_GCC_FOR_CUDA: dict[tuple[int, int], int] = {
    (11, 0): 9,
    (11, 1): 10,
    (11, 2): 10,
    (11, 3): 10,
    (11, 4): 11,
    (11, 5): 11,
    (11, 6): 11,
    (11, 7): 11,
    (11, 8): 11,
    (12, 0): 12,
    (12, 1): 12,
    (12, 2): 12,
    (12, 3): 13,
    (12, 4): 13,
    (12, 5): 13,
    (12, 6): 13,
    (12, 7): 13,
    (12, 8): 14,
    (12, 9): 14,
    (13, 0): 15,
}


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """'12.9' / '12.9.86' / '13.2.0-14' -> (12, 9) / (12, 9, 86) / (13, 2, 0)."""
    if not text:
        return None
    m = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def run_text(cmd: list[str], env: dict[str, str], timeout: float = 10.0) -> tuple[int, str]:
    """Run a command; (returncode, stdout+stderr). A missing or hanging program gives (-1, reason)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, errors="replace")
    except FileNotFoundError:
        return -1, f"{cmd[0]}: not found"
    except PermissionError:
        return -1, f"{cmd[0]}: not executable"
    except subprocess.TimeoutExpired:
        return -1, f"{cmd[0]}: no answer within {timeout:.0f} s"
    except OSError as exc:
        return -1, f"{cmd[0]}: {exc}"
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def which(name: str, env: dict[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH", os.defpath))


@dataclass
class CudaHome:
    """Where torch's cpp_extension will look for the CUDA toolkit. `source`: env | nvcc-on-path | default."""

    path: Path | None
    source: str
    variable: str = ""


def find_cuda_home(env: dict[str, str]) -> CudaHome:
    """Mirror `torch.utils.cpp_extension._find_cuda_home` without importing torch."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            return CudaHome(Path(env[var]), "env", var)
    nvcc = which("nvcc", env)
    if nvcc:
        # like torch: the folder above the nvcc found, without resolving links or wrapper scripts
        return CudaHome(Path(nvcc).parent.parent, "nvcc-on-path")
    default = Path("/usr/local/cuda")
    return CudaHome(default if default.exists() else None, "default")


@dataclass
class Nvcc:
    path: str
    version: tuple[int, ...] | None
    output: str


def nvcc_version(path: str, env: dict[str, str]) -> Nvcc:
    code, out = run_text([path, "--version"], env)
    m = re.search(r"release (\d+)\.(\d+)", out)
    version = (int(m.group(1)), int(m.group(2))) if code == 0 and m else None
    return Nvcc(path, version, out.strip()[-400:])


def toolkit_headers(cuda_home: Path | None) -> Path | None:
    """The folder holding cuda_runtime.h under `cuda_home` (include/ or targets/<arch>/include/)."""
    if cuda_home is None:
        return None
    candidates = [cuda_home / "include"] + [
        Path(p) for p in glob.glob(str(cuda_home / "targets" / "*" / "include"))
    ]
    return next((p for p in candidates if (p / "cuda_runtime.h").is_file()), None)


def host_config_header(cuda_home: Path | None) -> Path | None:
    if cuda_home is None:
        return None
    candidates = [cuda_home / "include" / "crt" / "host_config.h"]
    candidates += [
        Path(p) for p in glob.glob(str(cuda_home / "targets" / "*" / "include" / "crt" / "host_config.h"))
    ]
    return next((p for p in candidates if p.is_file()), None)


def max_gcc_from_header(header: Path) -> int | None:
    """The toolkit's own limit: host_config.h stops compilation with `#if __GNUC__ > N` -> #error."""
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"#if\s+__GNUC__\s*>\s*(\d+)", text)
    return int(m.group(1)) if m else None


def max_clang_from_header(header: Path) -> int | None:
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"unsupported clang version![^\n]*less than (\d+)", text)
    return int(m.group(1)) - 1 if m else None


def max_gcc_for(cuda: tuple[int, ...]) -> tuple[int | None, str]:
    """(max GCC major, how we know) from the table; a release newer than the table gets the newest row."""
    key = (cuda[0], cuda[1] if len(cuda) > 1 else 0)
    if key in MAX_GCC_FOR_CUDA:
        return MAX_GCC_FOR_CUDA[key], "table"
    older = [k for k in MAX_GCC_FOR_CUDA if k <= key]
    if older and key > max(MAX_GCC_FOR_CUDA):
        return MAX_GCC_FOR_CUDA[max(MAX_GCC_FOR_CUDA)], "table (newest known row)"
    return None, "unknown CUDA release"


@dataclass
class HostCompiler:
    """The compiler nvcc uses for host code. `chosen_by`: CC | NVCC_CCBIN | PATH."""

    path: str | None
    chosen_by: str
    kind: str = "gcc"  # gcc | clang | unknown
    version: tuple[int, ...] | None = None
    raw: str = ""


def host_compiler(env: dict[str, str]) -> HostCompiler:
    for var in ("CC", "NVCC_CCBIN"):
        if env.get(var):
            name, chosen_by = env[var], var
            break
    else:
        name, chosen_by = "gcc", "PATH"
    path = name if os.path.sep in name else which(name, env)
    if not path or not os.path.exists(path):
        return HostCompiler(None, chosen_by, "unknown", None, f"{name}: not found")
    code, banner = run_text([path, "--version"], env)
    kind = "clang" if "clang" in banner.lower() else "gcc" if code == 0 else "unknown"
    if kind == "gcc":
        _, full = run_text([path, "-dumpfullversion", "-dumpversion"], env)
        version = parse_version(full)
    else:
        m = re.search(r"version (\d+(?:\.\d+)*)", banner)
        version = parse_version(m.group(1)) if m else None
    return HostCompiler(path, chosen_by, kind, version, banner.splitlines()[0] if banner else "")


def installed_gcc_versions(env: dict[str, str], max_major: int) -> list[tuple[int, str]]:
    """gcc-N programs on PATH with N <= max_major, newest first (to suggest `export CC=...`)."""
    found = []
    for n in range(max_major, 5, -1):
        path = which(f"gcc-{n}", env)
        if path:
            found.append((n, path))
    return found


def local_toolkits(major: int) -> list[Path]:
    """/usr/local/cuda-MAJOR.* and /opt/cuda-MAJOR.* folders that hold an nvcc."""
    out = []
    for pattern in (f"/usr/local/cuda-{major}.*", f"/opt/cuda-{major}.*", f"/opt/nvidia/cuda-{major}.*"):
        out += [
            Path(p) for p in sorted(glob.glob(pattern), reverse=True) if (Path(p) / "bin" / "nvcc").exists()
        ]
    return out


def real_toolkit(nvcc: str | None, env: dict[str, str]) -> Path | None:
    """The toolkit an nvcc really belongs to, also behind a wrapper script: nvcc's dry run prints `TOP=`."""
    if not nvcc:
        return None
    direct = Path(nvcc).resolve().parent.parent
    if toolkit_headers(direct):
        return direct
    code, out = run_text([nvcc, "--dryrun", "-E", "-x", "cu", os.devnull], env)
    m = re.search(r"^#\$ TOP=(.+)$", out, re.M)
    if m:
        top = Path(m.group(1).strip()).resolve()
        for cand in (top, top.parent):
            if toolkit_headers(cand):
                return cand
    return None
