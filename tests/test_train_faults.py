"""A run loses at most one checkpoint interval to kill -9, and a silent death is explained afterwards."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splatforge import postmortem
from splatforge.rundir import RunDir, read_json
from splatforge.splat.checkpoint import list_checkpoints, load_checkpoint

INTERVAL_S = 2.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    folder = tmp_path_factory.mktemp("faults") / "scene"
    make_synthetic_capture(folder, SyntheticOptions(n_views=8, width=48, height=48, seed=2, n_points=400))
    return folder / "transforms.json"


def _train_cmd(scene: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "splatforge", "train", str(scene), "-o", str(run), "--preset", "demo",
            "--backend", "reference", "--steps", "1000000", "--checkpoint-every", "1000000",
            "--checkpoint-every-s", str(INTERVAL_S), "--set", "log_every_s=0.25", "--set", "save_renders=false",
            "--json"]


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:  # the line being written when the process died
            pass
    return [r for r in out if "loss" in r]


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_at_random_points_loses_at_most_one_interval(scene, tmp_path):
    run = tmp_path / "run"
    rng = random.Random(7)
    for attempt in range(2):
        proc = subprocess.Popen(_train_cmd(scene, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = _metrics(run)[-1]["elapsed_s"] if _metrics(run) else 0.0
        kill_after = started + rng.uniform(INTERVAL_S + 0.5, 3 * INTERVAL_S)  # trained seconds, a random point
        # ... and a checkpoint on disk: on a loaded machine a starved step can carry the training past
        # kill_after before the first checkpoint (due at 2 s) is written, in the same loop iteration
        _wait_for(lambda t=kill_after: _metrics(run) and _metrics(run)[-1]["elapsed_s"] >= t
                  and list_checkpoints(run / "checkpoints"), 240, "training")
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        trained = _metrics(run)[-1]
        ckpts = list_checkpoints(run / "checkpoints")
        assert ckpts, "no checkpoint after several intervals"
        kept = load_checkpoint(ckpts[-1][1])
        lost_s = trained["elapsed_s"] - kept["elapsed_s"]
        # one interval, plus the time of the step and checkpoint in flight at the kill
        assert lost_s <= INTERVAL_S + 1.0, f"kill {attempt}: lost {lost_s:.2f} s of training"
        manifest = read_json(run / "run.json")
        assert manifest["stages"]["train"]["status"] == "running"  # what a silent death leaves behind
        death = postmortem.diagnose(RunDir(run), "train")
        assert death is not None and f"at step {trained['step']}" in death.message
        if attempt == 1:
            assert "resuming from" in err or "stopped without a word" in err

    # The next run says what happened, resumes from the newest checkpoint and stops cleanly on SIGTERM.
    newest = list_checkpoints(run / "checkpoints")[-1][0]
    killed_file = (run / "metrics.jsonl").stat().st_ino  # holds the killed run's lines past the checkpoint
    proc = subprocess.Popen(_train_cmd(scene, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def resumed_and_training() -> bool:  # the resumed run rewrites the file (a new inode), then appends to it
        rows = _metrics(run) if (run / "metrics.jsonl").stat().st_ino != killed_file else []
        return bool(rows) and rows[-1]["step"] > newest + 5

    _wait_for(resumed_and_training, 240, "resumed training")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped without a word" in err and f"resuming from ckpt_{newest:07d}.pt" in err
    entry = read_json(run / "run.json")["stages"]["train"]
    assert entry["status"] == "cancelled" and "at step" in entry["previous_death"]["message"]
    steps = [r["step"] for r in _metrics(run)]
    assert steps == sorted(set(steps))  # resumed lines replace the lost ones: no step twice


GROWER = """
import sys, numpy as np
from splatforge.splat.config import TrainOptions
from splatforge.splat.trainer import train
from splatforge.stage import Events
ballast = []
def grow(event):  # a leak: 40 MB more at every progress report
    ballast.append(np.ones(10_000_000, dtype=np.float32))
train(sys.argv[1], TrainOptions(preset="demo", backend="reference", overrides={"steps": 1000000},
      log_every_s=0.2, show_progress=False, save_renders=False), Events(on_progress=grow))
"""


def test_a_death_after_memory_grew_is_explained(scene, tmp_path):
    from splatforge.scene import read_scene, write_transforms

    run = RunDir(tmp_path / "run").create()
    write_transforms(read_scene(scene), run.transforms_json)
    run.set_stage("train", status="running", pid=None, host=None)
    proc = subprocess.Popen([sys.executable, "-c", GROWER, str(run.root)], stderr=subprocess.PIPE, text=True)
    run.set_stage("train", status="running", pid=proc.pid, host=os.uname().nodename)
    _wait_for(lambda: len(_metrics(run.root)) >= 8, 240, "a few progress reports")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    records = _metrics(run.root)
    assert records[-1]["host_rss_gb"] > records[0]["host_rss_gb"] + 0.2
    death = postmortem.diagnose(run, "train")
    assert death is not None
    assert f"at step {records[-1]['step']}" in death.message and "the process having grown from" in death.message
    assert "host memory in use" in death.message and "memory was not short" in death.message

    # The same records with the machine nearly out of memory: the OOM killer is named, with what to change.
    lines = run.metrics_jsonl.read_text().splitlines()
    last = json.loads(lines[-1])
    last["host_available_gb"] = 0.02 * last["host_total_gb"]
    run.metrics_jsonl.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    death = postmortem.diagnose(run, "train")
    assert "out-of-memory killer is the likely cause" in death.message and "--downscale" in death.advice


def test_a_stage_run_by_a_live_process_is_not_taken_over(scene, tmp_path):
    from splatforge.errors import InputError
    from splatforge.splat.stages import TRAIN
    from splatforge.stage import run_stage

    run = RunDir(tmp_path / "run").create()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.set_stage("train", status="running", pid=sleeper.pid, host=os.uname().nodename)
        with pytest.raises(InputError, match=f"being run by process {sleeper.pid}"):
            run_stage(TRAIN, run)
    finally:
        sleeper.kill()
        sleeper.wait()
