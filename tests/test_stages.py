"""The stage as one object: the stage list, options composed and validated before anything runs, a stage
added in one place and run from `run_pipeline`, the CLI and a service job, resume with the recorded
options, default run names, and the typed progress/cancel channel."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splatforge.errors import InputError
from splatforge.pipeline import RunOptions, run_pipeline, stages
from splatforge.rundir import RunDir, read_json
from splatforge.stage import Events

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture(scope="module")
def tiny_capture(tmp_path_factory) -> Path:
    """A 64x64 synthetic capture with its poses: every stage runs in seconds on the CPU."""
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    folder = tmp_path_factory.mktemp("tiny") / "scene"
    make_synthetic_capture(folder, SyntheticOptions(n_views=10, width=64, height=64, seed=4, n_points=600))
    return folder


def tiny_changes(capture: Path) -> dict:
    # Known poses (no SfM), the gate forced (64 px images are too small for the check), 4 training steps.
    return {"poses.engine": "known", "poses.cameras": str(capture / "transforms.json"), "check.force": True,
            "train.steps": 4, "train.backend": "reference", "train.show_progress": False,
            "train.save_renders": False}


@pytest.fixture
def with_toy(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("SPLATFORGE_STAGES", "toy_stage:TOY")
    stages.cache_clear()
    yield
    monkeypatch.delenv("SPLATFORGE_STAGES")
    stages.cache_clear()


def _env_with_toy() -> dict:
    return {**os.environ, "SPLATFORGE_STAGES": "toy_stage:TOY",
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def test_one_stage_list_and_options_per_stage():
    names = [s.name for s in stages()]
    assert names == ["frames", "check", "poses", "train", "export", "report"]
    options = RunOptions()
    assert list(options.stages) == names and options.train.preset == "default"
    changed = options.with_changes({"train.steps": "300", "poses": {"mapper": "global"}, "check.force": "yes",
                                    "train.strategy.cap_max": 5000, "until_stage": "poses"})
    assert changed.train.config().steps == 300 and changed.train.config().strategy.cap_max == 5000
    assert changed.poses.mapper == "global" and changed.check.force is True and changed.until_stage == "poses"
    assert options.train.overrides == {}  # the original is untouched
    # round trip through JSON (run.json, a job's stored options)
    again = RunOptions.from_dict(json.loads(json.dumps(changed.to_dict())))
    assert again.to_dict() == changed.to_dict()
    for bad, words in [({"train.sh_degree": 7}, "sh_degree must be 0..3"), ({"poses.nope": 1}, "unknown option"),
                       ({"nope": 1}, "unknown option"), ({"train.steps": "many"}, "not a valid int"),
                       ({"train.preset": "fsat"}, "unknown preset"), ({"until_stage": "paint"}, "unknown stage")]:
        with pytest.raises(InputError, match=words):
            options.with_changes(bad)


def test_a_preset_typo_fails_before_any_work(tmp_path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "splatforge", "run", str(tmp_path / "photos"), "-o",
                           str(tmp_path / "r"), "--preset", "fsat"], capture_output=True, text=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 2 and "fsat" in proc.stderr
    assert all(p in proc.stderr for p in ("fast", "default", "quality", "mcmc", "demo"))
    assert not (tmp_path / "r").exists()  # nothing ran, nothing was written
    assert cpu < 3.0, f"the refusal cost {cpu:.1f} CPU seconds"  # Python + the CLI's start, no stage


def test_added_stage_runs_from_the_pipeline_the_cli_and_a_job(tiny_capture, tmp_path, with_toy):
    assert [s.name for s in stages()][-2:] == ["toy", "report"]  # after export, as the stage asked
    run = RunDir(tmp_path / "run")
    seen = []
    options = RunOptions().with_changes({**tiny_changes(tiny_capture), "toy.greeting": "pipeline"})
    result = run_pipeline(tiny_capture / "images", run, options, Events(on_progress=seen.append))
    assert result.stages["toy"] == {"status": "done", "greeting": "pipeline"}
    assert (run.root / "toy.txt").read_text() == "pipeline after scene.ply\n"
    assert ("toy", 0.5, "greeting") in [(e.stage, e.fraction, e.message) for e in seen]
    manifest = read_json(run.manifest)
    assert list(manifest["stages"]) == ["frames", "check", "poses", "train", "export", "toy", "report"]
    assert manifest["stages"]["toy"]["options"] == {"greeting": "pipeline"}

    # The CLI continues the run with its recorded options; the changed toy option re-runs toy (and what
    # follows it) only.
    proc = subprocess.run([sys.executable, "-m", "splatforge", "run", str(run.root), "--set", "toy.greeting=cli",
                           "--json"], capture_output=True, text=True, timeout=300, env=_env_with_toy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = {k: v["status"] for k, v in json.loads(proc.stdout)["stages"].items()}
    assert done == {"frames": "skipped (already done)", "check": "skipped (already done)",
                    "poses": "skipped (already done)", "train": "skipped (already done)",
                    "export": "skipped (already done)", "toy": "done", "report": "done"}
    assert "toy runs again: its options changed" in proc.stderr and "'pipeline' -> 'cli'" in proc.stderr
    assert (run.root / "toy.txt").read_text().startswith("cli ")

    # A service job: the executor's task (what a Ray worker runs) with the job's stored options.
    from splatforge.service.executor import TaskSpec, job_paths, run_job
    from splatforge.service.store import Store

    job_dir = tmp_path / "jobs" / ("j" * 16)
    paths = job_paths(job_dir)
    shutil.copytree(tiny_capture, paths["upload"])
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = Store(db)
    store.create("j" * 16, {**tiny_changes(paths["upload"]), "toy.greeting": "job"},
                 {"source": "upload/images"}, owner="test")
    assert run_job(TaskSpec(job_id="j" * 16, attempt=0, db_url=db, job_dir=str(job_dir),
                            runner="splatforge.pipeline:run_pipeline")) == "succeeded"
    job_run = RunDir(paths["run"])
    assert (job_run.root / "toy.txt").read_text() == "job after scene.ply\n"
    assert read_json(job_run.manifest)["stages"]["toy"]["status"] == "done"
    store.close()


def test_run_continues_with_the_options_it_was_started_with(tiny_capture, tmp_path):
    run = tmp_path / "run"
    base = ["--set", f"poses.cameras={tiny_capture / 'transforms.json'}", "--engine", "known", "--force",
            "--backend", "reference", "--set", "train.save_renders=false"]
    first = subprocess.run([sys.executable, "-m", "splatforge", "run", str(tiny_capture / "images"), "-o", str(run),
                            "--preset", "demo", "--steps", "6", "--until", "poses", *base, "--json"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "splatforge", "run", str(run), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing" in proc.stderr
    manifest = read_json(run / "run.json")
    train = manifest["stages"]["train"]
    assert train["status"] == "done" and train["options"]["preset"] == "demo"
    assert read_json(run / "train.json")["steps"] == 6
    assert train["options"]["overrides"]["steps"] == 6


def test_default_run_names(tmp_path, monkeypatch):
    from splatforge.pipeline_cli import default_run_dir

    monkeypatch.chdir(tmp_path)
    kitchen = tmp_path / "kitchen" / "images"
    other = tmp_path / "elsewhere" / "kitchen" / "images"
    for folder in (kitchen, other):
        folder.mkdir(parents=True)
    assert default_run_dir(kitchen) == Path("runs/kitchen")
    assert default_run_dir(tmp_path / "video.mp4") == Path("runs/video")
    RunDir(Path("runs/kitchen")).create().update_manifest(input=str(kitchen.resolve()))
    assert default_run_dir(kitchen) == Path("runs/kitchen")  # the same capture: its own folder
    assert default_run_dir(other) == Path("runs/kitchen-2")  # another capture never lands there
    RunDir(Path("runs/kitchen-2")).create().update_manifest(input=str(tmp_path / "third"))
    assert default_run_dir(other) == Path("runs/kitchen-3")


def test_a_run_folder_refuses_another_input(tiny_capture, tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.update_manifest(input=str(tmp_path / "first"))
    with pytest.raises(InputError) as err:
        run_pipeline(tiny_capture / "images", run, RunOptions())
    assert "holds a run of" in err.value.message and "--from frames" not in err.value.advice


def test_cancel_before_a_stage_stops_it_and_records_nothing_as_done(tiny_capture, tmp_path):
    from splatforge.stage import Cancelled

    run = RunDir(tmp_path / "run")
    events = Events()
    events.on_progress = lambda e: events.cancel.set() if e.stage == "check" and e.fraction == 1.0 else None
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        run_pipeline(tiny_capture / "images", run, RunOptions().with_changes(tiny_changes(tiny_capture)), events)
    assert time.perf_counter() - t0 < 60
    stages_done = read_json(run.manifest)["stages"]
    assert stages_done["check"]["status"] == "done" and "poses" not in stages_done


def test_help_shows_flags_as_flags():
    proc = subprocess.run([sys.executable, "-m", "splatforge", "run", "--help"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0 and "--force" in proc.stdout and "--set KEY=VALUE" in proc.stdout
    assert "<bool>" not in proc.stdout
    poses = subprocess.run([sys.executable, "-m", "splatforge", "poses", "--help"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert "-o, --out" in poses.stdout and "<bool>" not in poses.stdout
