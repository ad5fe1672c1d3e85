"""Why did a stage stop without a word? Read what the run folder recorded before the process died.

run.json keeps, per stage, the process (`pid`, `host`) that set it "running"; metrics.jsonl keeps, with
every line, the process's resident memory, the machine's available memory and the GPU's. When a stage is
still "running" but its process is gone, nothing raised an error: the kernel's out-of-memory killer, a
container limit, a driver reset or a power cut ended it. `diagnose` turns the last records into a
sentence the user can act on; the pipeline says it before resuming, and the job service stores it as the
job's error.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from typing import Any

from splatforge.rundir import RunDir

# Less than this share of the machine's memory available at the last record: memory was nearly gone.
LOW_MEMORY_SHARE = 0.08


@dataclass(frozen=True)
class Death:
    stage: str
    message: str  # what the records show, in one or two sentences
    advice: str
    last_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "message": self.message, "advice": self.advice, "last_step": self.last_step}


def process_alive(pid: int | None, host: str | None) -> bool | None:
    """True/False for a process on this host; None when it ran on another host (we cannot tell)."""
    if not pid:
        return False
    if host and host != platform.node():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_records(run: RunDir, count: int = 200) -> list[dict[str, Any]]:
    """The last `count` complete lines of metrics.jsonl (a line cut by the death is skipped)."""
    if not run.metrics_jsonl.exists():
        return []
    lines = run.metrics_jsonl.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def running_stage(run: RunDir) -> str | None:
    """The stage run.json says is running, if any."""
    stages = run.read_manifest()["stages"] if run.manifest.exists() else {}
    return next((name for name, entry in stages.items() if (entry or {}).get("status") == "running"), None)


def diagnose(run: RunDir, stage: str, known_dead: bool = False) -> Death | None:
    """A `Death` when run.json says `stage` is running but its process is gone (on this host, or
    `known_dead`: a caller that saw it die, such as the job service), else None."""
    entry = run.read_manifest()["stages"].get(stage) or {}
    if entry.get("status") != "running":
        return None
    if not known_dead and process_alive(entry.get("pid"), entry.get("host")) is not False:
        return None
    records = [r for r in last_records(run) if "loss" in r] if stage == "train" else []
    if not records:
        return Death(stage, f"the last run of {stage} (process {entry.get('pid')}, started {entry.get('start')}) "
                            "stopped without a word before it recorded anything",
                     "if it happens again, run `splatforge doctor` and look at `dmesg` for an out-of-memory kill")
    last, first = records[-1], records[0]
    step = last.get("step")
    total_gib = last.get("host_total_gb") or _machine_memory_gib()
    facts = [f"at step {step}"]
    rss, available = last.get("host_rss_gb"), last.get("host_available_gb")
    if available is not None and total_gib:
        facts.append(f"with {total_gib - available:.1f} of {total_gib:.1f} GiB host memory in use")
    if rss is not None and first.get("host_rss_gb") is not None and rss > first["host_rss_gb"] * 1.2:
        facts.append(f"the process having grown from {first['host_rss_gb']:.1f} to {rss:.1f} GiB")
    if last.get("gpu_reserved_gb") is not None:
        facts.append(f"{last['gpu_reserved_gb']:.1f} GiB reserved on the GPU")
    said = f"the last run stopped without a word {', '.join(facts)}"
    if available is not None and total_gib and available < LOW_MEMORY_SHARE * total_gib:
        return Death(stage, f"{said}: the kernel's out-of-memory killer is the likely cause",
                     "lower --downscale (e.g. --downscale 2) or --max-gaussians, or free host memory; "
                     "`dmesg | grep -i oom` confirms it", step)
    return Death(stage, f"{said}; memory was not short, so something outside ended it (a container or "
                        "scheduler limit, a driver reset, a reboot)",
                 "look at `dmesg` and the scheduler's log; running the same command again resumes", step)


def _machine_memory_gib() -> float | None:
    try:
        import psutil

        return psutil.virtual_memory().total / 1024**3
    except Exception:  # noqa: BLE001 - psutil missing: say what we can without it
        return None
