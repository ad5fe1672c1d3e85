"""`splatforge run` and `splatforge demo`, and the progress display every stage command shares."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

DEFAULT_RUNS = Path("runs")
# A folder named like this holds a capture's photos; the capture's name is its parent's.
GENERIC_FOLDER_NAMES = {"images", "image", "frames", "photos", "pictures", "input", "rgb", "jpg", "raw"}


@contextmanager
def progress_display(enabled: bool = True):
    """A rich display with one bar per stage, fed by `Progress` events; yields an `Events` to pass on."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from splatforge.console import console
    from splatforge.stage import Events, cancel_on_signals, train_stats

    bars = Progress(TextColumn("{task.fields[stage]:>7}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                    TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False, disable=not enabled)
    tasks: dict[str, Any] = {}

    def on_progress(event) -> None:
        if event.stage not in tasks:
            tasks[event.stage] = bars.add_task("", total=1.0, stage=event.stage)
        message = event.message
        if event.train is not None:
            message = f"step {event.train.step}/{event.train.total} {train_stats(event.train)}"
            if event.train.gpu_mem_gb is not None:
                message += f" mem {event.train.gpu_mem_gb:.1f}GB"
        bars.update(tasks[event.stage], completed=event.fraction, description=message)

    with bars, cancel_on_signals(Events(on_progress=on_progress)) as events:
        yield events


def default_run_dir(source: Path) -> Path:
    """runs/<capture name>: the parent's name for a generic folder (`scene/images` -> runs/scene), and a
    free name (`runs/scene-2`) when that folder already holds a run of another input."""
    from splatforge.rundir import RunDir

    source = Path(source).expanduser().resolve()
    name = source.parent.name if source.is_dir() and source.name.lower() in GENERIC_FOLDER_NAMES else source.stem
    name = name or "capture"
    candidate, n = DEFAULT_RUNS / name, 2
    while True:
        recorded = RunDir(candidate).read_manifest().get("input") if (candidate / "run.json").exists() else None
        if recorded is None or Path(recorded) == source:
            return candidate
        candidate, n = DEFAULT_RUNS / f"{name}-{n}", n + 1


def recorded_options(run_dir: Path):
    """The options a run folder was started with (None for a new folder or an unreadable record)."""
    from splatforge.errors import InputError
    from splatforge.pipeline import RunOptions
    from splatforge.rundir import RunDir

    recorded = RunDir(run_dir).read_manifest().get("options") if (Path(run_dir) / "run.json").exists() else None
    if not recorded:
        return None
    try:
        return RunOptions.from_dict({**recorded, "from_stage": None, "until_stage": None})
    except InputError as exc:
        from splatforge.console import log

        log.warning("the options recorded in %s cannot be read (%s): using the defaults", run_dir, exc.message)
        return None


def execute(source: Path | None, run_dir: Path, changes: dict[str, Any], as_json: bool) -> None:
    """Options (recorded ones when continuing a run, else defaults, then `changes`) -> the pipeline."""
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.pipeline import RunOptions, run_pipeline
    from splatforge.report import summary_lines
    from splatforge.rundir import RunDir

    run = RunDir(run_dir)
    try:
        base = recorded_options(run.root) if source is None or _same_input(run, source) else None
        if base is not None:
            console.print(f"[dim]continuing {run.root} with the options it was started with"
                          f"{' and ' + ', '.join(changes) if changes else ''}[/]")
        options = (base or RunOptions()).with_changes(changes)
        with progress_display(enabled=True) as events:
            result = run_pipeline(source, run, options, events)
    except SplatforgeError as exc:
        if run.manifest.exists():
            console.print(f"[dim]run folder: {run.root} (finished stages are kept; re-run to continue)[/]")
        fail(exc, as_json)
        return
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped.[/] Everything finished so far is in {run.root}; run "
                      f"`splatforge run {run.root}` to continue (training resumes from its last checkpoint).")
        raise typer.Exit(130) from None
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
    lines = summary_lines(result.report) if result.report else [f"done: {run.root}"]
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _same_input(run, source: Path) -> bool:
    recorded = run.read_manifest().get("input") if run.manifest.exists() else None
    return recorded is not None and Path(recorded) == Path(source).expanduser().resolve()


def _check_preset(value: str | None) -> str | None:
    """At parse time, before anything runs (the recipes module is light: no torch)."""
    from splatforge.splat.config import PRESETS

    if value is not None and value not in PRESETS:
        raise typer.BadParameter(f"unknown preset {value!r}: use one of {', '.join(PRESETS)}")
    return value


def stage_changes(*, preset=None, steps=None, force=None, gpu=None, gpus=None, backend=None, engine=None, cameras=None,
                  frames=None, downscale=None, max_gaussians=None, checkpoint_every=None,
                  checkpoint_every_s=None, from_stage=None, until_stage=None, assignments=None) -> dict[str, Any]:
    """The command line's named options as `RunOptions` changes (only those given), then `--set` ones."""
    from splatforge.options import parse_assignments

    named = {"train.preset": preset, "train.steps": steps, "check.force": force,
             "train.device": f"cuda:{gpu}" if gpu is not None else None, "train.gpus": gpus,
             "train.backend": backend,
             "poses.engine": engine, "poses.cameras": cameras, "frames.count": frames,
             "train.downscale": downscale, "train.strategy.cap_max": max_gaussians,
             "train.checkpoint_every": checkpoint_every, "train.checkpoint_every_s": checkpoint_every_s,
             "from_stage": from_stage, "until_stage": until_stage}
    changes = {k: v for k, v in named.items() if v is not None}
    if cameras is not None and engine is None:
        changes["poses.engine"] = "known"
    changes.update(parse_assignments(assignments))
    return changes


PRESET_HELP = "Training preset: fast | default | quality | mcmc | demo (default: default)."
SET_HELP = ("Any option of any stage, e.g. --set train.sh_degree=2 --set poses.mapper=global "
            "--set check.ordered=true (repeatable; `splatforge options` lists them).")


def run_command(
    source: Path = typer.Argument(..., help="A folder of images, a video, or a zip of either; or a run folder "
                                  "to continue."),
    out: Path = typer.Option(None, "-o", "--out", help="Run folder (default: runs/<capture name>)."),
    preset: str = typer.Option(None, help=PRESET_HELP, callback=_check_preset),
    steps: int = typer.Option(None, help="Training steps (default: the preset's; the schedule is stretched)."),
    from_stage: str = typer.Option(None, "--from", help="Redo from this stage: frames|check|poses|train|export|report."),
    until_stage: str = typer.Option(None, "--until", help="Stop after this stage (e.g. poses)."),
    force: bool = typer.Option(None, "--force", help="Continue even when the capture check says will-fail."),
    gpu: int = typer.Option(None, help="GPU index among visible ones (default: the one with most free memory)."),
    gpus: str = typer.Option(None, "--gpus", help="Train on several GPUs, e.g. 0,1,2,3 or all (pays on large "
                             "captures; see docs/benchmarks.md)."),
    backend: str = typer.Option(None, help="Rasterizer: auto | gsplat | reference."),
    engine: str = typer.Option(None, help="Pose engine: auto (the capture's own transforms.json or sparse/0 when "
                               "it has them, else colmap; the default) | colmap | known | vggt."),
    cameras: Path = typer.Option(None, help="Known cameras: transforms.json, COLMAP folder or rig JSON/pickle."),
    frames: int = typer.Option(None, help="Frames to take from a video (default: chosen from its length; its frame count or more: every frame)."),
    downscale: float = typer.Option(None, help="Train on images this many times smaller."),
    max_gaussians: int = typer.Option(None, "--max-gaussians", help="Cap on the number of Gaussians."),
    checkpoint_every: int = typer.Option(None, help="A checkpoint every N training steps (default 1000) ..."),
    checkpoint_every_s: float = typer.Option(None, help="... or every S seconds, whichever comes first (default 60)."),
    assignments: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document with the result."),
) -> None:
    """Everything: frames -> check -> poses -> train -> export -> report, resumable."""
    from splatforge.cli import fail
    from splatforge.errors import SplatforgeError

    changes = stage_changes(preset=preset, steps=steps, force=force, gpu=gpu, gpus=gpus, backend=backend, engine=engine,
                            cameras=cameras, frames=frames, downscale=downscale, max_gaussians=max_gaussians,
                            checkpoint_every=checkpoint_every, checkpoint_every_s=checkpoint_every_s,
                            from_stage=from_stage, until_stage=until_stage, assignments=assignments)
    try:
        if out is None and (Path(source) / "run.json").is_file():  # `splatforge run RUN` continues a run folder
            run_dir, start = Path(source), None
        else:
            run_dir, start = out or default_run_dir(source), source
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    execute(start, run_dir, changes, as_json)


def demo_command(
    out: Path = typer.Option(DEFAULT_RUNS / "demo", "-o", "--out", help="Run folder."),
    views: int = typer.Option(24, help="Synthetic views to render."),
    steps: int = typer.Option(None, help="Training steps (default: the demo preset's)."),
    backend: str = typer.Option(None, help="Rasterizer: auto | gsplat | reference."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document with the result."),
) -> None:
    """The whole pipeline on a synthetic capture it renders itself (no data needed; CPU-friendly)."""
    from splatforge.rundir import RunDir
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    run = RunDir(out).create()
    capture = run.input / "synthetic"
    if not (capture / "transforms.json").exists():
        make_synthetic_capture(capture, SyntheticOptions(n_views=views, width=320, height=240, seed=0))
    # Small enough for a 2-core CPU in a few minutes: 80x60 training images, at most 6000 Gaussians.
    # engine colmap: the synthetic capture comes with its true poses, but the demo shows the whole pipeline
    changes = stage_changes(preset="demo", steps=steps, backend=backend, downscale=4, max_gaussians=6000,
                            engine="colmap")
    execute(capture / "images", run.root, changes, as_json)


def options_command(
    stage: str = typer.Argument(None, help="Only this stage's options."),
    preset: str = typer.Option("default", help="Show the training recipe of this preset.", callback=_check_preset),
    as_json: bool = typer.Option(False, "--json", help="Print them as one JSON document."),
) -> None:
    """Every option of every stage with its default: what `--set STAGE.KEY=VALUE` and a job's options take."""
    from splatforge.console import console, emit_json
    from splatforge.options import to_dict
    from splatforge.pipeline import RunOptions, stage_named, stages
    from splatforge.splat.config import PRESETS

    chosen = [stage_named(stage)] if stage else list(stages())
    defaults = RunOptions()
    doc = {s.name: to_dict(defaults.stages[s.name]) for s in chosen}
    if "train" in doc:
        doc["train"]["recipe"] = to_dict(PRESETS[preset])  # keys accepted directly under train.
    if as_json:
        emit_json(doc)
        return
    for s in chosen:
        console.print(f"[bold]{s.name}[/]: {s.help}", highlight=False)
        for key, value in doc[s.name].items():
            if key in ("recipe", "overrides"):
                continue
            console.print(f"  {s.name}.{key} = {value!r}", markup=False, highlight=False)
        if s.name == "train":
            console.print(f"  recipe of preset {preset!r} (change with train.KEY, e.g. train.steps, "
                          "train.strategy.cap_max):", markup=False, highlight=False)
            for key, value in doc["train"]["recipe"].items():
                console.print(f"    train.{key} = {value!r}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("demo")(demo_command)
    app.command("options")(options_command)
