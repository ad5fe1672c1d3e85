"""Training progress: logs due by steps or by time (slow CPU runs), and lines that never show "nan"."""

from __future__ import annotations

import io

from rich.console import Console

from splatforge.splat.progress import DASH, LogClock, describe_train_event, eta_text, stat, train_progress_bar


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_clock_fires_by_steps_and_by_time():
    clock = FakeClock()
    logs = LogClock(every_steps=100, every_s=5.0, clock=clock)
    fired = []
    for done in range(1, 301):
        clock.t += 0.4  # a slow step: 0.4 s
        if logs.due(done):
            fired.append(done)
    # every 5 s (13 steps at 0.4 s: 12 steps make 4.8 s) and on every 100th step
    assert 100 in fired and 200 in fired and 300 in fired
    gaps = [b - a for a, b in zip(fired, fired[1:])]
    assert max(gaps) <= 13 and len(fired) >= 300 // 13
    fast = LogClock(every_steps=100, every_s=5.0, clock=clock)
    fast_fired = []
    for done in range(1, 1001):
        clock.t += 0.001  # a fast GPU step: the step rule alone decides
        if fast.due(done):
            fast_fired.append(done)
    assert fast_fired == list(range(100, 1001, 100))
    off = LogClock(every_steps=50, every_s=0, clock=clock)
    clock.t += 1e6
    assert not off.due(1) and off.due(50)


def test_no_measurement_reads_as_a_dash_not_nan():
    assert stat(float("nan"), ".4f") == DASH and stat(None, ".2f") == DASH and stat(0.12345, ".4f") == "0.1235"
    line = describe_train_event({"step": 0, "total": 400})
    assert "nan" not in line.lower() and f"loss {DASH}" in line and f"psnr {DASH}" in line
    line = describe_train_event({"step": 40, "total": 400, "loss": 0.1, "psnr": 21.456, "num_gaussians": 12000,
                                 "steps_per_s": 1.5, "eta_s": 240.4, "gpu_mem_gb": None})
    assert line == "step 40/400 loss 0.1000 psnr 21.46 G 12,000 1.5 steps/s ETA 4:00"
    assert eta_text(3725) == "ETA 1:02:05" and eta_text(float("inf")) == "" and eta_text(None) == ""


def test_train_bar_shows_dashes_before_the_first_log():
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    bar = train_progress_bar(True, console)
    task = bar.add_task("train", total=400, completed=0, loss=float("nan"), psnr=float("nan"), ng=3062, mem="")
    bar.refresh()
    text = bar.get_renderable()
    console.print(text)
    first = out.getvalue()
    assert "nan" not in first.lower() and f"loss {DASH}" in first and f"PSNR {DASH}" in first and "3,062" in first
    bar.update(task, completed=40, loss=0.0812, psnr=22.5, ng=5000)
    console.print(bar.get_renderable())
    assert "loss 0.0812" in out.getvalue() and "PSNR 22.50" in out.getvalue()
