"""`splatforge doctor`: real checks on this machine, and each failure made to really happen.

Failures are caused in the environment the doctor inspects, never by patching the doctor: a fake `nvcc`
or `gcc` on PATH that reports another version, a shadow module on PYTHONPATH that is missing, crashes
or fails like a NumPy-1 extension under NumPy 2, a shadow `torch` package that says it was built for
another CUDA (this machine's torch is CPU-only), a 64 MiB tmpfs on /dev/shm in a private mount namespace,
a closed port as the Ray address.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splatforge.doctor import Check, DoctorOptions, run_checks
from splatforge.doctor.checks import check_db, check_lpips, check_ray, check_shm, exit_code
from splatforge.doctor.model import USES
from splatforge.doctor.probe import run_probe

STRIP = ("CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CC", "CXX", "NVCC_CCBIN",
         "TORCH_EXTENSIONS_DIR", "SPLATFORGE_DB", "SPLATFORGE_RAY_ADDRESS", "PYTHONPATH")  # fmt: skip


def clean_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIP}
    env.update(changes)
    return env


def prepend_path(env: dict[str, str], *dirs: Path) -> dict[str, str]:
    env["PATH"] = os.pathsep.join([*map(str, dirs), env.get("PATH", os.defpath)])
    return env


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_toolkit(root: Path, release: str, max_gcc: int | None = None, headers: bool = True) -> Path:
    """A CUDA toolkit folder whose nvcc reports `release`; host_config.h with `max_gcc` when given."""
    write_exe(root / "bin" / "nvcc", f'echo "nvcc: NVIDIA (R) Cuda compiler driver"\n'
              f'echo "Cuda compilation tools, release {release}, V{release}.99"\n')  # fmt: skip
    if headers:
        (root / "include" / "crt").mkdir(parents=True, exist_ok=True)
        (root / "include" / "cuda_runtime.h").write_text("/* fake */\n")
        if max_gcc is not None:
            (root / "include" / "crt" / "host_config.h").write_text(
                f"#if __GNUC__ > {max_gcc}\n#error -- unsupported GNU version! gcc versions later than {max_gcc}\n"
                "#endif\n"
            )
    return root


def fake_gcc(bindir: Path, version: str, names=("gcc", "c++", "g++")) -> Path:
    for name in names:
        write_exe(bindir / name, f'case "$1" in -dumpfullversion|-dumpversion) echo {version};; '
                  f'*) echo "{name} (GCC) {version}";; esac\n')  # fmt: skip
    return bindir


def fake_torch(root: Path, cuda: str, build_root: Path) -> Path:
    """A `torch` package that imports like a CUDA build on a machine whose driver is absent."""
    pkg = root / "torch"
    (pkg / "utils").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        f"__version__ = '2.5.1+cu{cuda.replace('.', '')}'\n"
        f"class version:\n    cuda = {cuda!r}\n    hip = None\n"
        "class cuda:\n"
        "    is_available = staticmethod(lambda: False)\n"
        "    device_count = staticmethod(lambda: 0)\n"
        "    get_arch_list = staticmethod(lambda: [])\n"
        "class backends:\n    class cudnn:\n        version = staticmethod(lambda: None)\n"
    )
    (pkg / "utils" / "__init__.py").write_text("")
    (pkg / "utils" / "cpp_extension.py").write_text(
        f"def get_default_build_root():\n    return {str(build_root)!r}\n"
    )
    return root


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def run(env: dict[str, str], uses=("cpu",), tmp: Path | None = None) -> dict[str, Check]:
    checks = run_checks(options=DoctorOptions(uses=tuple(uses), env=env, workspace=tmp or Path.cwd()))
    assert all(c.status in ("ok", "warn", "fail") for c in checks)
    assert all(c.fix for c in checks if c.status != "ok"), [
        c for c in checks if c.status != "ok" and not c.fix
    ]
    return by_name(checks)


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# ------------------------------------------------------------------------------------------ this machine


def test_real_machine_json_cli(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "splatforge", "doctor", "--json", "--workspace", str(tmp_path)],
                          capture_output=True, text=True, env=clean_env(), timeout=120)  # fmt: skip
    seconds = time.perf_counter() - start
    doc = json.loads(proc.stdout)
    checks = doc["checks"]
    for c in checks:
        assert set(c) >= {"name", "status", "detail", "fix"} and c["status"] in ("ok", "warn", "fail")
    names = {c["name"]: c for c in checks}
    for expected in ("python", "torch", "cuda", "gpu.visible", "driver", "nvcc", "cuda_home", "host_compiler",
                     "ninja", "gsplat", "pycolmap", "numpy", "import.cv2", "import.av", "video.h264", "video.hevc",
                     "viewer.assets", "metrics.lpips", "disk", "ram", "shm", "service.db",
                     "service.ray"):  # fmt: skip
        assert expected in names, expected
    assert names["python"]["status"] == "ok"
    assert names["video.h264"]["status"] == "ok" and names["video.hevc"]["status"] == "ok"
    assert names["numpy"]["status"] == "ok" and names["pycolmap"]["status"] == "ok"
    assert proc.returncode == (1 if any(c["status"] == "fail" for c in checks) else 0)
    assert doc["ok"] == (proc.returncode == 0)
    if not has_cuda():
        # the CPU-only use works here; a missing GPU is only a warning for it
        assert names["cuda"]["status"] == "warn"
        assert proc.returncode == 0, [c for c in checks if c["status"] == "fail"]
    assert seconds < 60, seconds  # ~2 s unloaded; generous for a shared 2-core machine


def test_gpu_use_fails_without_gpu_and_human_output_has_fixes():
    if has_cuda():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "splatforge", "doctor", "--gpu"], capture_output=True, text=True,
                          env=clean_env(COLUMNS="300"), timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""  # humans get stderr; stdout is kept for --json
    lines = proc.stderr.splitlines()
    cuda = next(ln for ln in lines if " cuda " in f" {ln} " and "FAIL" in ln)
    assert "fix:" in cuda and "NVIDIA GPU" in cuda
    assert "not ready for train-gpu" in lines[-1]


def test_uses():
    with pytest.raises(ValueError):
        DoctorOptions(uses=("nonsense",)).needs()
    assert USES["all"] >= USES["train-gpu"] | USES["serve"] | USES["view"]
    assert (
        "gpu" not in DoctorOptions(uses=("cpu",)).needs()
        and "gpu" in DoctorOptions(uses=("train-gpu",)).needs()
    )


def test_lpips_weights_absent_is_a_warning_with_the_command_then_ok_when_present(tmp_path):
    """In a fresh TORCH_HOME: absent -> warn with the exact command; a truncated file -> warn; a file of
    the right size (RANDOM weights, not the real network: the doctor checks presence) -> ok."""
    import torch

    from splatforge.splat.lpips_files import ALEXNET_FILE, ALEXNET_URL

    env = clean_env(TORCH_HOME=str(tmp_path / "th"))
    folder = tmp_path / "th" / "hub" / "checkpoints"
    absent = check_lpips(env)
    assert absent.status == "warn" and str(folder) in absent.detail
    assert absent.fix.startswith(f"mkdir -p {folder} && curl -L -o {folder / ALEXNET_FILE} {ALEXNET_URL}")
    assert exit_code([absent]) == 0  # LPIPS is optional: never a failure
    folder.mkdir(parents=True)
    (folder / ALEXNET_FILE).write_bytes(b"partial")
    truncated = check_lpips(env)
    assert truncated.status == "warn" and "only 7 bytes" in truncated.detail
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.1.weight": torch.zeros(4096, 600)},
               folder / ALEXNET_FILE)
    present = check_lpips(env)
    assert present.status == "ok" and str(folder / ALEXNET_FILE) in present.detail


# ---------------------------------------------------------------------------------- the gsplat toolchain


def test_nvcc_major_mismatch_conda_129_vs_torch_118(tmp_path):
    """The issue's case: nvcc 12.9 (conda) on PATH, torch built for CUDA 11.8."""
    fake_torch(tmp_path / "py", "11.8", tmp_path / "ext")
    conda = fake_toolkit(tmp_path / "conda", "12.9", max_gcc=14)
    env = prepend_path(clean_env(PYTHONPATH=str(tmp_path / "py")), conda / "bin")
    checks = run(env, ("train-gpu",), tmp_path)
    nvcc = checks["nvcc"]
    assert nvcc.status == "fail", nvcc
    assert "12.9" in nvcc.detail and "11.8" in nvcc.detail
    assert "cuda-toolkit=11.8" in nvcc.fix or "cuda-11." in nvcc.fix
    assert "cu129" in nvcc.fix  # or torch for the nvcc that is there
    assert checks["torch"].detail.endswith("built for CUDA 11.8")
    assert checks["gsplat"].status == "fail" and "nvcc" in checks["gsplat"].detail
    # the same machine for CPU use: only warnings
    cpu = run(env, ("cpu",), tmp_path)
    assert cpu["nvcc"].status == "warn" and cpu["gsplat"].status == "warn"


def test_gcc13_refused_by_cuda121_and_hidden_gpus(tmp_path):
    fake_torch(tmp_path / "py", "12.1", tmp_path / "ext")
    cuda = fake_toolkit(tmp_path / "cuda-12.1", "12.1")  # no host_config.h: the built-in table decides
    gccbin = fake_gcc(tmp_path / "gcc13", "13.2.0")
    # PATH holds only the fake gcc, so no real gcc-12 of this machine is found for the fix
    env = clean_env(
        PYTHONPATH=str(tmp_path / "py"), CUDA_HOME=str(cuda), CUDA_VISIBLE_DEVICES="", PATH=str(gccbin)
    )
    checks = run(env, ("train-gpu",), tmp_path)
    host = checks["host_compiler"]
    assert host.status == "fail", host
    assert "13.2.0" in host.detail and "<= 12" in host.detail
    assert host.fix == "sudo apt install gcc-12 g++-12 && export CC=gcc-12 CXX=g++-12"
    assert checks["nvcc"].status == "ok" and checks["cuda_home"].status == "ok"
    assert checks["cuda"].status == "fail" and checks["cuda"].fix == "unset CUDA_VISIBLE_DEVICES"
    assert checks["gpu.visible"].status == "fail"

    # an older gcc is installed next to it: the fix points at it; CC picks it, and then all is well
    fake_gcc(gccbin, "12.3.0", names=("gcc-12", "g++-12"))
    again = run(env, ("train-gpu",), tmp_path)
    assert again["host_compiler"].fix == f"export CC={gccbin / 'gcc-12'} CXX={gccbin / 'g++-12'}"
    env_fixed = dict(env, CC=str(gccbin / "gcc-12"), CXX=str(gccbin / "g++-12"))
    assert run(env_fixed, ("train-gpu",), tmp_path)["host_compiler"].status == "ok"


def test_toolkit_header_overrides_table_and_bad_cuda_home(tmp_path):
    fake_torch(tmp_path / "py", "12.8", tmp_path / "ext")
    cuda = fake_toolkit(tmp_path / "cuda-12.8", "12.8", max_gcc=11)  # table says 14; this toolkit says 11
    gccbin = fake_gcc(tmp_path / "bin", "12.1.0")
    env = prepend_path(clean_env(PYTHONPATH=str(tmp_path / "py"), CUDA_HOME=str(cuda)), gccbin)
    checks = run(env, ("train-gpu",), tmp_path)
    assert checks["host_compiler"].status == "fail"
    assert checks["host_compiler"].data["source"].endswith("host_config.h")
    assert checks["host_compiler"].data["max_major"] == 11

    env["CUDA_HOME"] = str(tmp_path / "nowhere")
    bad = run(env, ("train-gpu",), tmp_path)
    assert bad["cuda_home"].status == "fail" and "has no bin/nvcc" in bad["cuda_home"].detail
    assert bad["nvcc"].status == "fail"  # torch would use CUDA_HOME's nvcc, which is not there


def test_gsplat_cache_detection(tmp_path):
    fake_torch(tmp_path / "py", "12.8", tmp_path / "ext")
    cuda = fake_toolkit(tmp_path / "cuda-12.8", "12.8", max_gcc=14)
    gccbin = fake_gcc(tmp_path / "bin", "12.2.0")
    env = prepend_path(clean_env(PYTHONPATH=str(tmp_path / "py"), CUDA_HOME=str(cuda)), gccbin)
    checks = run(env, ("train-gpu",), tmp_path)
    g = checks["gsplat"]
    expected_dir = (
        tmp_path / "ext" / f"py{sys.version_info.major}{sys.version_info.minor}_cu128" / "gsplat_cuda"
    )
    if checks["ninja"].status == "ok":
        assert g.status == "warn" and "not compiled yet" in g.detail and "--deep" in g.fix
    assert g.data["build_dir"] == str(expected_dir)
    expected_dir.mkdir(parents=True)
    (expected_dir / "gsplat_cuda.so").write_bytes(b"\x7fELF")
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "ext-env")  # TORCH_EXTENSIONS_DIR wins over the cache root
    assert run(env, ("train-gpu",), tmp_path)["gsplat"].data["build_dir"] == str(
        tmp_path / "ext-env" / "gsplat_cuda"
    )
    del env["TORCH_EXTENSIONS_DIR"]
    cached = run(env, ("train-gpu",), tmp_path)["gsplat"]
    assert cached.status == "ok" and "compiled at" in cached.detail


@pytest.mark.skipif(
    not Path("/usr/local/cuda-13.0/bin/nvcc").exists(), reason="needs this machine's CUDA 13.0"
)
def test_real_toolkit_behind_wrapper_nvcc(tmp_path):
    """This machine's /usr/local/bin/nvcc is a wrapper script: torch would derive CUDA_HOME=/usr/local."""
    fake_torch(tmp_path / "py", "13.0", tmp_path / "ext")
    env = clean_env(PYTHONPATH=str(tmp_path / "py"), PATH="/usr/local/bin:/usr/bin:/bin")
    checks = run(env, ("train-gpu",), tmp_path)
    assert checks["nvcc"].status == "ok" and "13.0" in checks["nvcc"].detail
    assert checks["host_compiler"].status == "ok"
    assert checks["host_compiler"].data["source"].endswith("host_config.h")  # found behind the wrapper
    ch = checks["cuda_home"]
    assert ch.status == "fail" and ch.fix == "export CUDA_HOME=/usr/local/cuda-13.0"
    env["CUDA_HOME"] = "/usr/local/cuda-13.0"
    assert run(env, ("train-gpu",), tmp_path)["cuda_home"].status == "ok"


def test_nvcc_missing(tmp_path):
    fake_torch(tmp_path / "py", "12.8", tmp_path / "ext")
    env = clean_env(PYTHONPATH=str(tmp_path / "py"), PATH=str(fake_gcc(tmp_path / "bin", "12.2.0")))
    env["CUDA_HOME"] = str(tmp_path / "no-cuda")
    checks = run(env, ("train-gpu",), tmp_path)
    assert checks["nvcc"].status == "fail" and "not found" in checks["nvcc"].detail
    assert "cuda-toolkit=12.8" in checks["nvcc"].fix or "cuda-12." in checks["nvcc"].fix
    assert checks["ninja"].status != "ok" or shutil.which("ninja", path=env["PATH"])


# ------------------------------------------------------------------------------------ broken libraries


def test_missing_crashing_and_numpy_abi_broken_modules(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pycolmap.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pycolmap'\", name='pycolmap')\n"
    )
    (shadow / "cv2.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    # what a pybind11 module built for NumPy 1.x does under NumPy 2
    (shadow / "plyfile.py").write_text(
        "import sys\nsys.stderr.write('A module that was compiled using NumPy 1.x cannot be run in NumPy 2.0.0\\n')\n"
        "raise ImportError('numpy.core.multiarray failed to import')\n"
    )
    env = clean_env(PYTHONPATH=str(shadow))
    checks = run(env, ("cpu",), tmp_path)
    assert checks["pycolmap"].status == "fail" and "No module named 'pycolmap'" in checks["pycolmap"].detail
    assert checks["import.cv2"].status == "fail" and "SIGSEGV" in checks["import.cv2"].detail
    assert checks["numpy"].status == "fail" and checks["numpy"].fix == 'pip install "numpy<2"'
    assert "plyfile" in checks["numpy"].detail
    # the crash ended only its own step: modules after it were still checked in a new process
    assert checks["import.av"].status == "ok" and checks["video.hevc"].status == "ok"
    assert exit_code(list(checks.values())) == 1


def test_probe_hang_is_a_timeout_not_a_stuck_doctor(tmp_path):
    (tmp_path / "cv2.py").write_text("import time\ntime.sleep(60)\n")
    start = time.perf_counter()
    res = run_probe(["import:numpy", "import:cv2", "import:PIL"], clean_env(PYTHONPATH=str(tmp_path)), 3.0)
    assert time.perf_counter() - start < 10
    assert res["import:numpy"].status == "done"
    assert res["import:cv2"].status == "timeout"
    assert res["import:PIL"].status == "timeout"


# -------------------------------------------------------------------------------------- system, service


def test_tiny_shm_in_private_mount_namespace(tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare not available")
    code = ("import json; from splatforge.doctor.checks import check_shm; c = check_shm(); "
            "print(json.dumps(c.to_dict()))")  # fmt: skip
    proc = subprocess.run([unshare, "-m", "sh", "-c", "mount -t tmpfs -o size=64m tmpfs /dev/shm && exec "
                           f"{sys.executable} -c '{code}'"], capture_output=True, text=True, timeout=60)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    c = json.loads(proc.stdout)
    assert c["status"] == "warn"
    assert "64.0 MiB" in c["detail"] or "64 MiB" in c["detail"]
    assert "--shm-size" in c["fix"]
    assert check_shm().status in ("ok", "warn")  # the real one, outside the namespace


def test_service_database(tmp_path):
    serve = USES["serve"]
    env = clean_env(SPLATFORGE_DB=f"sqlite:///{tmp_path}/missing/dir/jobs.db")
    c = check_db(env, serve)
    assert c.status == "fail" and c.fix == f"mkdir -p {tmp_path}/missing/dir"
    assert check_db(env, USES["cpu"]).status == "warn"
    db = tmp_path / "jobs.db"
    con = sqlite3.connect(db)
    con.execute("create table jobs (id integer primary key)")
    con.commit()
    con.close()
    ok = check_db(clean_env(SPLATFORGE_DB=f"sqlite:///{db}"), serve)
    assert ok.status == "ok" and "1 schema objects" in ok.detail
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    assert check_db(clean_env(SPLATFORGE_DB=f"sqlite:///{tmp_path}/garbage.db"), serve).status == "fail"
    assert check_db(clean_env(), serve).status == "ok"  # not configured: nothing to check


def test_service_database_server_unreachable():
    pytest.importorskip("psycopg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = check_db(
        clean_env(SPLATFORGE_DB=f"postgresql+psycopg://u:secret@127.0.0.1:{port}/jobs"), USES["serve"]
    )
    assert c.status == "fail" and "secret" not in c.detail


def test_ray_address(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok = check_ray(clean_env(SPLATFORGE_RAY_ADDRESS=f"ray://127.0.0.1:{port}"), USES["serve"], 2.0)
        assert ok.status == "ok"
    start = time.perf_counter()
    bad = check_ray(clean_env(SPLATFORGE_RAY_ADDRESS=f"127.0.0.1:{port}"), USES["serve"], 2.0)
    assert bad.status == "fail" and "unreachable" in bad.detail and "ray start --head" in bad.fix
    assert time.perf_counter() - start < 5
    assert check_ray(clean_env(SPLATFORGE_RAY_ADDRESS=f"127.0.0.1:{port}"), USES["cpu"], 2.0).status == "warn"
    assert check_ray(clean_env(SPLATFORGE_RAY_ADDRESS="not a port:x"), USES["serve"]).status == "fail"


# ------------------------------------------------------------------------------------------------- deep


def test_deep_without_gpu_is_a_warning_for_cpu_use(tmp_path):
    if has_cuda():
        pytest.skip("this machine has a GPU (see the gpu test)")
    checks = by_name(run_checks(options=DoctorOptions(uses=("cpu",), deep=True, env=clean_env())))
    r = checks["gsplat.render"]
    assert r.status == "warn" and "no CUDA device" in r.detail


@pytest.mark.gpu
def test_gpu_host_deep_renders_a_tile():
    # Keep PYTHONPATH: on a host where the packages were installed with --target (no venv) it is how
    # gsplat is found at all.
    env = clean_env(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    checks = by_name(run_checks(options=DoctorOptions(uses=("train-gpu",), deep=True, env=env)))
    assert checks["cuda"].status == "ok"
    assert checks["gpu.0"].data["memory_total"] > 0
    assert checks["gsplat.render"].status == "ok", checks["gsplat.render"]
    assert checks["driver"].status in ("ok", "warn")


# ------------------------------------------- GPU facts as the driver reports them (this machine has none)
# No GPU can be made to appear here, so these feed the judging functions what NVML and torch report on
# multi-GPU hosts (collected facts in, checks out); nothing of the doctor is replaced.

A100 = ("NVIDIA A100-SXM4-40GB", "GPU-aaaaaaaa-0000-0000-0000-000000000000", (8, 0))
H100 = ("NVIDIA H100 80GB HBM3", "GPU-bbbbbbbb-0000-0000-0000-000000000000", (9, 0))


def gpu_facts(env, uses, physical, cuda_order, *, torch_cuda="12.8", driver=(12, 8), arch=("sm_80", "sm_90"),
              free=None, kernel_error=None):  # fmt: skip
    from splatforge.doctor import gpu as g
    from splatforge.doctor import toolchain as tc
    from splatforge.doctor.checks import Facts
    from splatforge.doctor.probe import StepResult

    gib = 1024**3
    gpus = [g.NvmlGpu(i, n, u, f"0000:{i:02x}:00.0", 80 * gib, 1 * gib, (free or {}).get(i, 79 * gib), cap,
                      [{"pid": 4242, "name": "python", "memory": 70 * gib}] if (free or {}).get(i) else [])
            for i, (n, u, cap) in enumerate(physical)]  # fmt: skip
    devices = [{"index": i, "name": n, "uuid": u[4:], "capability": list(cap), "total_memory": 80 * gib}
               for i, (n, u, cap) in enumerate(cuda_order)]  # fmt: skip
    info = {"version": f"2.13.0+cu{torch_cuda.replace('.', '')}", "cuda": torch_cuda, "available": True,
            "count": len(devices), "arch_list": list(arch), "devices": devices, "warnings": []}  # fmt: skip
    kernel = (StepResult("cuda_kernel", "error", error=kernel_error) if kernel_error else
              StepResult("cuda_kernel", "done", {"devices": [{"index": d["index"], "ok": True, "value": 1.0,
                         "expected": 1.0, "seconds": 0.001, "free": None, "total": 80 * gib} for d in devices]}))  # fmt: skip
    steps = {"import:torch": StepResult("import:torch", "done", {}), "torch_info": StepResult("torch_info", "done",
             info), "cuda_kernel": kernel}  # fmt: skip
    opts = DoctorOptions(uses=uses, env=env)
    nvml = g.NvmlInfo(True, driver="570.86", cuda_driver=driver, gpus=gpus)
    none = tc.HostCompiler(None, "PATH")
    return Facts(
        opts, env, opts.needs(), steps, nvml, tc.CudaHome(None, "default"), None, None, none, none, None
    )


def test_cuda_renumbering_fastest_first():
    from splatforge.doctor.checks import check_visible

    # nvidia-smi: 0 = A100, 1 = H100; CUDA's default order puts the faster H100 first
    f = gpu_facts(clean_env(), ("train-gpu",), [A100, H100], [H100, A100])
    c = check_visible(f)
    assert c.status == "warn" and c.fix == "export CUDA_DEVICE_ORDER=PCI_BUS_ID"
    assert "cuda:0 is nvidia-smi GPU 1" in c.detail
    assert [m["nvidia_smi_index"] for m in c.data["map"]] == [1, 0]
    # CUDA_VISIBLE_DEVICES=1 meant the H100 (nvidia-smi 1) but CUDA's device 1 is the A100
    f = gpu_facts(clean_env(CUDA_VISIBLE_DEVICES="1"), ("train-gpu",), [A100, H100], [A100])
    c = check_visible(f)
    assert c.status == "warn" and "cuda:0 is nvidia-smi GPU 0, not GPU 1" in c.detail
    # with PCI order, the same mapping is what was asked for
    f = gpu_facts(clean_env(CUDA_VISIBLE_DEVICES="1", CUDA_DEVICE_ORDER="PCI_BUS_ID"), ("train-gpu",),
                  [A100, H100], [H100])  # fmt: skip
    c = check_visible(f)
    assert c.status == "ok" and "cuda:0 -> GPU 1 (NVIDIA H100 80GB HBM3)" in c.detail
    # UUIDs are unambiguous
    f = gpu_facts(clean_env(CUDA_VISIBLE_DEVICES=H100[1][:12]), ("train-gpu",), [A100, H100], [H100])
    assert check_visible(f).status == "ok"


def test_visible_devices_naming_no_gpu():
    from splatforge.doctor.checks import check_visible

    f = gpu_facts(clean_env(CUDA_VISIBLE_DEVICES="0,3,1"), ("train-gpu",), [A100, H100], [A100])
    c = check_visible(f)
    assert (
        c.status == "fail"
        and "'3' names no GPU" in c.detail
        and "ignores it and every entry after it" in c.detail
    )
    assert c.fix == "export CUDA_VISIBLE_DEVICES=0,1"
    assert check_visible(gpu_facts(clean_env(CUDA_VISIBLE_DEVICES="0,3,1"), ("cpu",), [A100, H100], [A100])).status \
        == "warn"  # fmt: skip


def test_gpu_memory_arch_driver_and_kernel():
    from splatforge.doctor.checks import check_cuda, check_driver, check_gpus

    gib = 1024**3
    f = gpu_facts(clean_env(), ("train-gpu",), [A100, H100], [H100, A100], free={1: 1 * gib})
    gpus = by_name(check_gpus(f))
    busy = gpus["gpu.0"]  # cuda:0 is the H100 = nvidia-smi 1, which a process fills
    assert busy.status == "warn" and "4242 python" in busy.detail and "nvidia-smi GPU 1" in busy.detail
    assert busy.fix.startswith(f"export CUDA_VISIBLE_DEVICES={A100[1]}")
    assert gpus["gpu.1"].status == "ok" and "compute capability 8.0" in gpus["gpu.1"].detail

    blackwell = ("NVIDIA RTX PRO 6000", "GPU-cccccccc-0000-0000-0000-000000000000", (12, 0))
    f = gpu_facts(clean_env(), ("train-gpu",), [blackwell], [blackwell], arch=("sm_80", "sm_90"))
    c = check_gpus(f)[0]
    assert c.status == "fail" and "no kernels for sm_120" in c.detail and "--index-url" in c.fix
    assert check_gpus(gpu_facts(clean_env(), ("train-gpu",), [blackwell], [blackwell],
                                arch=("sm_90", "sm_120")))[0].status == "ok"  # fmt: skip

    old = check_driver(
        gpu_facts(clean_env(), ("train-gpu",), [H100], [H100], torch_cuda="12.8", driver=(11, 8))
    )
    assert old.status == "fail" and old.fix.endswith("https://download.pytorch.org/whl/cu118")
    minor = check_driver(
        gpu_facts(clean_env(), ("train-gpu",), [H100], [H100], torch_cuda="12.8", driver=(12, 4))
    )
    assert minor.status == "warn" and "cu124" in minor.fix
    assert check_driver(gpu_facts(clean_env(), ("train-gpu",), [H100], [H100])).status == "ok"

    err = "CUDA error: no kernel image is available for execution on the device"
    c = check_cuda(gpu_facts(clean_env(), ("train-gpu",), [H100], [H100], kernel_error=err))
    assert c.status == "fail" and c.fix.startswith("pip install --force-reinstall torch --index-url")
    assert check_cuda(gpu_facts(clean_env(), ("train-gpu",), [H100], [H100])).status == "ok"
