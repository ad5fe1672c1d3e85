"""When training reports progress, and how a progress line reads.

A log is due every `every_steps` steps or when `every_s` seconds have passed since the last one, so a
slow CPU run (seconds per step) still updates its bar, ETA and callback every few seconds, while a fast
GPU run logs as before. Deciding reads only the host clock: no GPU sync, and one more `.item()` every
`every_s` seconds at most when the time rule fires.

Before the first measurement there is no loss or PSNR: lines show "—", never "nan" (which reads like
a diverged run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

DASH = "—"


class LogClock:
    """due(done) is True every `every_steps` steps, or once `every_s` seconds passed since the last True."""

    def __init__(self, every_steps: int, every_s: float = 5.0, clock=time.perf_counter):
        self.every_steps = max(1, int(every_steps))
        self.every_s = every_s
        self.clock = clock
        self.last = clock()

    def due(self, done: int) -> bool:
        now = self.clock()
        if done % self.every_steps == 0 or (self.every_s > 0 and now - self.last >= self.every_s):
            self.last = now
            return True
        return False


def stat(value: Any, spec: str) -> str:
    """`value` formatted with `spec`, or "—" when there is no measurement yet (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return format(value, spec)


def eta_text(seconds: float | None) -> str:
    """'ETA 1:02:03' / 'ETA 4:05'; '' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"ETA {h}:{m:02d}:{sec:02d}" if h else f"ETA {m}:{sec:02d}"


def describe_train_event(event: Mapping[str, Any]) -> str:
    """One line for a training progress event (pipeline and job UIs): step, loss, PSNR, Gaussians, ETA."""
    parts = [f"step {event.get('step', 0)}/{event.get('total', '?')}",
             f"loss {stat(event.get('loss'), '.4f')}", f"psnr {stat(event.get('psnr'), '.2f')}"]
    if event.get("num_gaussians") is not None:
        parts.append(f"G {event['num_gaussians']:,}")
    if event.get("gpu_mem_gb") is not None:
        parts.append(f"mem {event['gpu_mem_gb']:.1f}GB")
    if event.get("steps_per_s"):
        parts.append(f"{event['steps_per_s']:.3g} steps/s")
    eta = eta_text(event.get("eta_s"))
    if eta:
        parts.append(eta)
    return " ".join(parts)


def train_progress_bar(enabled: bool, console):
    """The `train` command's bar: step, bar, loss / PSNR / Gaussians ("—" before the first log), memory,
    elapsed, ETA. Task fields: loss, psnr (float, NaN = none yet), ng (int), mem (str)."""
    import rich.progress as rp
    from rich.text import Text

    class StatsColumn(rp.ProgressColumn):
        def render(self, task) -> Text:
            f = task.fields
            return Text(f"loss {stat(f.get('loss'), '.4f')}  PSNR {stat(f.get('psnr'), '.2f')}  "
                        f"#G {stat(f.get('ng'), ',')}")

    return rp.Progress(
        rp.TextColumn("[bold]train[/] {task.completed}/{task.total}"), rp.BarColumn(), StatsColumn(),
        rp.TextColumn("{task.fields[mem]}"), rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
