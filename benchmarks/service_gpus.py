"""Jobs per hour of the job service on a multi-GPU host, against one GPU; one worker killed mid-training.

For each phase (all GPUs, then 1 GPU) it starts `python3 -m splatforge serve` (SQLite, its own Ray,
`--ray-gpus K`, a workspace under /tmp), submits K+2 jobs at once through the REST API (zips of a posed
capture, so the pose stage reuses its transforms.json), and follows them until they end:

- each job's state over time, and the GPU its worker was given (the job's `worker` field: Ray's
  CUDA_VISIBLE_DEVICES, with the card's UUID and name from nvidia-smi);
- `nvidia-smi --query-compute-apps` every 0.5 s: which processes held which GPU;
- in the all-GPU phase, `kill -9` of one job's worker once training has a checkpoint: the service retries
  it (a new attempt) and training resumes from that checkpoint; the other jobs keep their first attempt.

Prints a table last and writes service_gpus.json (everything measured) and the servers' logs to --out.

On the GPU host (after `. benchmarks/gpu_service_env.sh`):
    python3 benchmarks/service_gpus.py --capture .gpu/fox --out "$OUT"
Here, on the CPU (fake GPU resources, the PyTorch reference trainer, a tiny synthetic capture):
    python benchmarks/service_gpus.py --cpu-dry-run --out /tmp/service_gpus
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("succeeded", "failed", "cancelled")
WORKER = re.compile(r"^(?P<host>[^:]+):(?P<pid>\d+)(?: gpu (?P<gpu>\S+)(?: (?P<uuid>GPU-\S+))?)?")


@dataclass
class Attempt:
    """One run of a job on one worker, as the API showed it (times in s since the phase's submit)."""

    number: int
    worker: str | None = None
    gpu: str | None = None  # Ray's CUDA_VISIBLE_DEVICES for the worker
    gpu_uuid: str | None = None
    started_s: float | None = None
    ended_s: float | None = None


@dataclass
class JobResult:
    id: str
    capture: str
    state: str = "queued"
    submitted_s: float = 0.0
    finished_s: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    states: list[tuple[float, str, str | None, int]] = field(default_factory=list)  # (t, state, stage, attempt)
    error: str | None = None
    psnr: float | None = None
    steps: int | None = None

    @property
    def queue_wait_s(self) -> float | None:
        first = self.attempts[0].started_s if self.attempts else None
        return None if first is None else first - self.submitted_s

    @property
    def run_s(self) -> float | None:
        first = self.attempts[0].started_s if self.attempts else None
        return None if first is None or self.finished_s is None else self.finished_s - first


@dataclass
class KillResult:
    job_id: str
    pid: int
    at_s: float
    train_step: int | None  # the training step the job had reported when it was killed
    checkpoint_step: int | None  # the newest checkpoint then
    resumed_from_step: int | None = None  # what the next attempt's trainer said it resumed from
    retry_line: str | None = None  # the service's note in the job's log
    final_state: str | None = None
    final_attempt: int | None = None


@dataclass
class PhaseResult:
    gpus: int
    jobs: list[JobResult]
    wall_s: float  # first submit to last job's end
    jobs_per_hour: float
    max_running: int  # jobs seen running at once (API polls)
    record_overlaps: list[str]  # two attempts on one GPU at once, by the job records
    smi_samples: int = 0
    smi_shared: list[dict] = field(default_factory=list)  # samples with more than one process on a GPU
    waited_for_gpu: int = 0  # jobs that queued because every GPU was busy
    kill: KillResult | None = None
    server_start_s: float = 0.0


# --- the server -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    token: str
    workspace: Path
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)


def start_server(workspace: Path, gpus: int, ray_cpus: int | None, startup_s: float = 300.0) -> Server:
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    port, token = free_port(), secrets.token_urlsafe(24)
    env = dict(os.environ, SPLATFORGE_TOKEN=token, PYTHONUNBUFFERED="1")
    src = str(ROOT / "src")
    if src not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
    command = [sys.executable, "-m", "splatforge", "serve", "--port", str(port), "--workspace", str(workspace),
               "--ray-gpus", str(gpus)]
    if ray_cpus:
        command += ["--ray-cpus", str(ray_cpus)]
    log = workspace / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", token, workspace, log)
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            health = httpx.get(f"{server.url}/healthz", timeout=5)
            if health.status_code == 200:
                print(f"  server up: {health.json()}", flush=True)
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"the server did not answer within {startup_s:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server, timeout_s: float = 60.0) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)


# --- captures -------------------------------------------------------------------------------------------
def zip_capture(folder: Path) -> bytes:
    """The capture's images and its transforms.json (stored: photos do not compress, and the service
    refuses zips that expand too much)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and (path.name == "transforms.json"
                                   or path.suffix.lower() in (".jpg", ".jpeg", ".png")):
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def synthetic_capture(folder: Path) -> Path:
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    if not (folder / "transforms.json").is_file():
        make_synthetic_capture(folder, SyntheticOptions(n_views=12, width=96, height=72))
    return folder


# --- GPU processes --------------------------------------------------------------------------------------
class SmiSampler:
    """`nvidia-smi --query-compute-apps` every `interval_s` in a thread: (t, [(pid, gpu_uuid, MiB)])."""

    def __init__(self, t0: float, interval_s: float = 0.5):
        self.t0, self.interval_s = t0, interval_s
        self.samples: list[tuple[float, list[tuple[int, str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> SmiSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=10).stdout
                rows = [tuple(part.strip() for part in line.split(",")) for line in out.splitlines() if line.strip()]
                self.samples.append((round(t, 2), [(int(r[0]), r[1], r[2]) for r in rows if len(r) == 3]))
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                self.samples.append((round(t, 2), [(-1, f"error: {exc}", "")]))
            self._stop.wait(self.interval_s)

    def shared(self) -> list[dict]:
        """Samples where one GPU held more than one compute process."""
        found = []
        for t, rows in self.samples:
            by_gpu: dict[str, list[int]] = {}
            for pid, uuid, _ in rows:
                by_gpu.setdefault(uuid, []).append(pid)
            found += [{"t": t, "gpu_uuid": uuid, "pids": pids} for uuid, pids in by_gpu.items() if len(pids) > 1]
        return found


# --- one phase ------------------------------------------------------------------------------------------
def submit_jobs(server: Server, captures: list[tuple[str, bytes]], n: int, form: dict[str, str],
                t0: float) -> list[JobResult]:
    def post(i: int) -> JobResult:
        name, data = captures[i % len(captures)]
        with server.client() as client:
            r = client.post("/v1/jobs", files=[("files", (f"{name}.zip", data, "application/zip"))], data=form)
        if r.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs answered {r.status_code}: {r.text[:500]}")
        return JobResult(id=r.json()["id"], capture=name, submitted_s=time.monotonic() - t0)

    with cf.ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, range(n)))


def observe(jobs: dict[str, JobResult], views: dict[str, dict], t: float) -> int:
    """Fold one poll of the job list into the results; returns how many jobs were running."""
    running = 0
    for job_id, job in jobs.items():
        view = views.get(job_id)
        if view is None:
            continue
        state, attempt = view["state"], view["attempt"]
        if not job.states or job.states[-1][1:] != (state, view["stage"], attempt):
            job.states.append((round(t, 2), state, view["stage"], attempt))
        current = job.attempts[-1] if job.attempts else None
        if current is not None and current.number != attempt and current.ended_s is None:
            current.ended_s = t  # superseded: the retry after the kill
        if state == "running":
            running += 1
            if current is None or current.number != attempt:
                current = Attempt(number=attempt, started_s=t)
                job.attempts.append(current)
            worker = view.get("worker")
            if worker and current.worker != worker:
                match = WORKER.match(worker)
                current.worker = worker
                if match:
                    current.gpu, current.gpu_uuid = match["gpu"], match["uuid"]
        elif state in FINAL and job.finished_s is None:
            job.finished_s = t
            if current is not None and current.ended_s is None:
                current.ended_s = t
        job.state = state
    return running


def record_overlaps(jobs: list[JobResult]) -> list[str]:
    """Two attempts on the same GPU whose running intervals overlap (as polled)."""
    spans = [(a.gpu, a.started_s, a.ended_s, j.id[:8], a.number) for j in jobs for a in j.attempts
             if a.gpu is not None and a.started_s is not None and a.ended_s is not None]
    overlaps = []
    for i, (gpu, s1, e1, id1, n1) in enumerate(spans):
        for gpu2, s2, e2, id2, n2 in spans[i + 1:]:
            if gpu == gpu2 and s1 < e2 and s2 < e1:
                overlaps.append(f"gpu {gpu}: {id1}#{n1} [{s1:.1f}, {e1:.1f}] and {id2}#{n2} [{s2:.1f}, {e2:.1f}]")
    return overlaps


def waited_for_gpu(jobs: list[JobResult], gpus: int) -> int:
    """Jobs whose first attempt started only after some earlier attempt ended: they queued for a GPU."""
    ends = sorted(a.ended_s for j in jobs for a in j.attempts if a.ended_s is not None)
    starts = sorted(j.attempts[0].started_s for j in jobs if j.attempts and j.attempts[0].started_s is not None)
    return sum(1 for k, start in enumerate(starts) if k >= gpus and ends and start >= ends[0] - 0.01)


def kill_candidate(jobs: dict[str, JobResult], views: dict[str, dict], workspace: Path) -> tuple | None:
    """A job training with a checkpoint behind it and steps since: (job, pid, step, checkpoint step)."""
    from splatforge.service.diskspace import newest_checkpoint_step

    for job_id, view in views.items():
        if view["state"] != "running" or view["stage"] != "train" or job_id not in jobs:
            continue
        step = (view.get("metrics") or {}).get("step")
        ckpt = newest_checkpoint_step(workspace / "jobs" / job_id / "run")
        match = WORKER.match(view.get("worker") or "")
        # step == ckpt happens where a step takes longer than the checkpoint interval (the CPU dry run)
        if match and ckpt and step is not None and step >= ckpt and match["host"] == socket.gethostname():
            return jobs[job_id], int(match["pid"]), int(step), ckpt
    return None


def check_resume(server: Server, kill: KillResult) -> None:
    with server.client() as client:
        view = client.get(f"/v1/jobs/{kill.job_id}").json()
        log = client.get(f"/v1/jobs/{kill.job_id}/log").text
    kill.final_state, kill.final_attempt = view["state"], view["attempt"]
    retry = [line for line in log.splitlines() if "automatic retry" in line]
    kill.retry_line = retry[0] if retry else None
    resumed = re.findall(r"resuming from \S+ \(step (\d+)\)", log)
    kill.resumed_from_step = int(resumed[-1]) if resumed else None


def run_phase(gpus: int, captures: list[tuple[str, bytes]], form: dict[str, str], args: argparse.Namespace,
              kill: bool) -> PhaseResult:
    workspace = Path(args.workspace) / f"gpus-{gpus}"
    print(f"== {gpus} GPU(s): {gpus + 2} jobs", flush=True)
    started = time.monotonic()
    server = start_server(workspace, gpus, args.ray_cpus)
    server_start_s = time.monotonic() - started
    try:
        t0 = time.monotonic()
        with SmiSampler(t0) as smi:
            submitted = submit_jobs(server, captures, gpus + 2, form, t0)
            jobs = {j.id: j for j in submitted}
            print(f"  submitted {len(jobs)} jobs in {time.monotonic() - t0:.1f} s", flush=True)
            max_running, killed, last_print = 0, None, 0.0
            deadline = t0 + args.timeout_s
            with server.client() as client:
                while time.monotonic() < deadline:
                    t = time.monotonic() - t0
                    views = {v["id"]: v for v in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]}
                    max_running = max(max_running, observe(jobs, views, t))
                    if kill and killed is None:
                        found = kill_candidate(jobs, views, workspace)
                        if found is not None:
                            job, pid, step, ckpt = found
                            os.kill(pid, signal.SIGKILL)
                            killed = KillResult(job.id, pid, round(t, 2), step, ckpt)
                            print(f"  t={t:.1f}s kill -9 {pid}: job {job.id[:8]} at training step {step}, "
                                  f"checkpoint at step {ckpt}", flush=True)
                    if t - last_print >= 10:
                        last_print = t
                        print(f"  t={t:.0f}s " + " ".join(f"{j.id[:6]}:{j.state[:4]}/{views[j.id]['stage'] or '-'}"
                                                        f"#{views[j.id]['attempt']}" for j in jobs.values()
                                                        if j.id in views), flush=True)
                    if all(j.state in FINAL for j in jobs.values()):
                        break
                    time.sleep(args.poll_s)
                for job in jobs.values():
                    view = client.get(f"/v1/jobs/{job.id}").json()
                    job.error = (view.get("error") or {}).get("message")
                    final = (view.get("metrics") or {}).get("final") or {}
                    job.psnr = ((final.get("eval") or {}).get("psnr"))
                    job.steps = final.get("steps")
        if killed is not None:
            check_resume(server, killed)
    finally:
        stop_server(server)
        out = Path(args.out) / f"gpus-{gpus}"
        out.mkdir(parents=True, exist_ok=True)
        for name in ("server.log", "ray.log"):
            if (workspace / name).is_file():
                shutil.copy(workspace / name, out / name)
        for job_dir in (workspace / "jobs").glob("*"):
            if (job_dir / "job.log").is_file():
                shutil.copy(job_dir / "job.log", out / f"job-{job_dir.name[:8]}.log")
    results = list(jobs.values())
    ends = [j.finished_s for j in results if j.finished_s is not None]
    wall = (max(ends) - min(j.submitted_s for j in results)) if ends else float("nan")
    done = sum(j.state == "succeeded" for j in results)
    return PhaseResult(gpus=gpus, jobs=results, wall_s=round(wall, 1), jobs_per_hour=round(3600 * done / wall, 1),
                       max_running=max_running, record_overlaps=record_overlaps(results),
                       smi_samples=len(smi.samples), smi_shared=smi.shared(), waited_for_gpu=waited_for_gpu(results, gpus),
                       kill=killed, server_start_s=round(server_start_s, 1))


# --- the verdicts and the table ---------------------------------------------------------------------------
def verdicts(phase: PhaseResult) -> list[str]:
    """What this phase shows, in words; a line starting with FAIL is a broken promise of the service."""
    lines = []
    ok = all(j.state == "succeeded" for j in phase.jobs)
    lines.append(("ok" if ok else "FAIL") + f": {sum(j.state == 'succeeded' for j in phase.jobs)}/{len(phase.jobs)} "
                 "jobs succeeded")
    lines.append(("ok" if phase.max_running <= phase.gpus else "FAIL")
                 + f": at most {phase.max_running} jobs running at once on {phase.gpus} GPU(s)")
    lines.append(("ok" if not phase.record_overlaps else "FAIL") + ": no two attempts on one GPU at once (job records)"
                 + ("" if not phase.record_overlaps else f": {phase.record_overlaps}"))
    lines.append(("ok" if phase.waited_for_gpu >= 2 else "FAIL")
                 + f": {phase.waited_for_gpu} job(s) queued until a GPU freed (expected >= 2)")
    if phase.smi_samples:
        lines.append(("ok" if not phase.smi_shared else "CHECK")
                     + f": nvidia-smi, {phase.smi_samples} samples, {len(phase.smi_shared)} with two processes on one "
                     "GPU" + (f" (first: {phase.smi_shared[:3]})" if phase.smi_shared else ""))
    else:
        lines.append("--: no nvidia-smi here: GPU sharing judged by the job records only")
    kill = phase.kill
    if kill is not None:
        resumed = (kill.resumed_from_step is not None and kill.checkpoint_step is not None
                   and kill.resumed_from_step >= kill.checkpoint_step)
        others = all(j.attempts and max(a.number for a in j.attempts) == 0 and j.state == "succeeded"
                     for j in phase.jobs if j.id != kill.job_id)
        lines.append(("ok" if kill.final_state == "succeeded" and kill.final_attempt == 1 and resumed else "FAIL")
                     + f": killed job {kill.job_id[:8]} (pid {kill.pid}, step {kill.train_step}, checkpoint "
                     f"{kill.checkpoint_step}) ended {kill.final_state} on attempt {kill.final_attempt}, "
                     f"resumed from step {kill.resumed_from_step}; service: {kill.retry_line!r}")
        lines.append(("ok" if others else "FAIL") + ": every other job succeeded on its first attempt")
    return lines


def table(phases: list[PhaseResult]) -> str:
    rows = ["| GPUs | jobs | wall s | jobs/hour | speed-up | queue wait s (min/median/max) | run s (min/median/max) "
            "| GPUs used |", "|---|---|---|---|---|---|---|---|"]
    base = next((p.jobs_per_hour for p in phases if p.gpus == 1), None)

    def spread(values: list[float]) -> str:
        values = sorted(v for v in values if v is not None)
        if not values:
            return "-"
        return f"{values[0]:.1f} / {values[len(values) // 2]:.1f} / {values[-1]:.1f}"

    for p in phases:
        used = sorted({a.gpu_uuid or a.gpu for j in p.jobs for a in j.attempts if a.gpu is not None})
        speed = f"{p.jobs_per_hour / base:.2f}x" if base else "-"
        rows.append(f"| {p.gpus} | {len(p.jobs)} | {p.wall_s:.1f} | {p.jobs_per_hour:.1f} | {speed} | "
                    f"{spread([j.queue_wait_s for j in p.jobs])} | {spread([j.run_s for j in p.jobs])} | {len(used)} |")
    rows.append("")
    rows.append("| GPUs | job | capture | state | attempts (gpu: start-end s) | queue wait s | run s | PSNR |")
    rows.append("|---|---|---|---|---|---|---|---|")
    for p in phases:
        for j in sorted(p.jobs, key=lambda j: j.submitted_s):
            tries = "; ".join(f"#{a.number} gpu {a.gpu}: {a.started_s or 0:.1f}-{a.ended_s or 0:.1f}" for a in j.attempts)
            wait = f"{j.queue_wait_s:.1f}" if j.queue_wait_s is not None else "-"
            run = f"{j.run_s:.1f}" if j.run_s is not None else "-"
            psnr = f"{j.psnr:.2f}" if j.psnr is not None else "-"
            rows.append(f"| {p.gpus} | {j.id[:8]} | {j.capture} | {j.state} | {tries} | {wait} | {run} | {psnr} |")
    return "\n".join(rows)


def gpu_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", action="append", type=Path, default=[],
                        help="a posed capture folder (images + transforms.json); repeat for a mix")
    parser.add_argument("--out", type=Path, required=True, help="folder for service_gpus.json and the logs")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs of the first phase (default: all)")
    parser.add_argument("--phases", default="all,1", help="GPU counts to measure, e.g. 'all,1' or '4,2,1'")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    parser.add_argument("--checkpoint-every-s", type=float, default=5.0,
                        help="so that the killed job has a checkpoint to resume from")
    parser.add_argument("--options", default=None, help="more job options, as the API's JSON `options` field")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker in the first phase")
    parser.add_argument("--workspace", default="/tmp/splatforge-service-gpus")
    parser.add_argument("--ray-cpus", type=int, default=None)
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per phase")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="on a CPU host: fake GPUs (--gpus, default 2), a tiny synthetic capture, the 'demo' "
                             "preset cut to --steps (default 20)")
    args = parser.parse_args(argv)

    if args.cpu_dry_run:
        args.gpus = args.gpus or 2
        args.preset = "demo" if args.preset == "fast" else args.preset
        args.steps = args.steps or 20
        args.checkpoint_every_s = min(args.checkpoint_every_s, 1.0)
        args.ray_cpus = args.ray_cpus or args.gpus + 2
        if not args.capture:
            args.capture = [synthetic_capture(Path(args.workspace) / "synthetic-capture")]
    else:
        found = gpu_count()
        args.gpus = args.gpus or found
        if not args.gpus:
            parser.error("no GPU found (nvidia-smi -L); use --cpu-dry-run on a CPU host")
    if not args.capture:
        parser.error("give --capture (a posed capture folder), or --cpu-dry-run")
    counts = [args.gpus if c.strip() == "all" else int(c) for c in args.phases.split(",")]
    form = {"preset": args.preset, "checkpoint_every_s": str(args.checkpoint_every_s)}
    if args.steps:
        form["steps"] = str(args.steps)
    if args.options:
        form["options"] = args.options
    captures = [(c.name, zip_capture(c)) for c in args.capture]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"captures: {', '.join(f'{n} ({len(d) / 1e6:.1f} MB zip)' for n, d in captures)}; job form: {form}")

    phases = []
    for i, gpus in enumerate(counts):
        phases.append(run_phase(gpus, captures, form, args, kill=(i == 0 and not args.no_kill)))
        (args.out / "service_gpus.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "host": socket.gethostname(),
             "phases": [asdict(p) for p in phases]}, indent=1))
    failed = False
    for p in phases:
        print(f"\n-- {p.gpus} GPU(s): server up in {p.server_start_s:.0f} s")
        for line in verdicts(p):
            print("  " + line)
            failed |= line.startswith("FAIL")
    print()
    print(table(phases))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
