"""`splatforge run` and `splatforge demo`."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_RUNS = Path("runs")


def _progress_printer():
    """A rich progress display: one bar per stage, updated from pipeline events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from splatforge.console import console

    progress = Progress(TextColumn("{task.fields[stage]:>7}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
    tasks: dict[str, int] = {}

    def on_event(event: dict) -> None:
        stage = event["stage"]
        if stage not in tasks:
            tasks[stage] = progress.add_task("", total=1.0, stage=stage)
        message = event.get("message", "")
        if stage == "train" and "loss" in event:
            message = (f"step {event.get('step')}/{event.get('total')} loss {event.get('loss', 0):.4f} "
                       f"psnr {event.get('psnr') or 0:.2f} G {event.get('num_gaussians', 0):,}")
            if event.get("gpu_mem_gb") is not None:
                message += f" mem {event['gpu_mem_gb']:.1f}GB"
        progress.update(tasks[stage], completed=min(1.0, float(event.get("fraction", 0.0))), description=message)

    return progress, on_event


def _run(source: Path | None, run_dir: Path, options, as_json: bool) -> None:
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.pipeline import run_pipeline
    from splatforge.rundir import RunDir

    run = RunDir(run_dir)
    progress, on_event = _progress_printer()
    try:
        with progress:
            result = run_pipeline(source, run, options, progress=on_event)
    except SplatforgeError as exc:
        console.print(f"[dim]run folder: {run.root} (finished stages are kept; re-run the same command to resume)[/]")
        fail(exc, as_json)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted.[/] Everything finished so far is in {run.root}; "
                      "re-run the same command to continue (training resumes from its last checkpoint).")
        raise typer.Exit(130) from None
    if as_json:
        emit_json({"ok": True, **result.to_dict()})
    for line in result.summary:
        console.print(line, markup=False, highlight=False)
    if not result.summary:
        console.print(f"done: {run.root}")


def run_command(
    source: Path = typer.Argument(..., help="A folder of images, a video, or a zip of either; or a run folder "
                                  "to continue."),
    out: Path = typer.Option(None, "-o", "--out", help="Run folder (default: runs/<input name>)."),
    preset: str = typer.Option("default", help="Training preset: fast | default | quality | mcmc."),
    steps: int = typer.Option(None, help="Training steps (default: the preset's)."),
    from_stage: str = typer.Option(None, "--from", help="Redo from this stage: frames|check|poses|train|export|report."),
    until_stage: str = typer.Option(None, "--until", help="Stop after this stage (e.g. poses)."),
    force: bool = typer.Option(False, help="Continue even when the capture check says will-fail."),
    gpu: int = typer.Option(None, help="GPU index among visible ones (default: the one with most free memory)."),
    backend: str = typer.Option("auto", help="Rasterizer: auto | gsplat | reference."),
    engine: str = typer.Option("colmap", help="Pose engine: colmap | known | vggt."),
    cameras: Path = typer.Option(None, help="Known cameras: transforms.json, COLMAP folder or rig JSON/pickle."),
    frames: int = typer.Option(None, help="Frames to take from a video (default: chosen from its length)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document with the result."),
) -> None:
    """Everything: frames -> check -> poses -> train -> export -> report, resumable."""
    from splatforge.pipeline import PipelineOptions

    if out is None and (Path(source) / "run.json").is_file():  # `splatforge run RUN` continues a run folder
        run_dir, source = Path(source), None
    else:
        run_dir = out or DEFAULT_RUNS / Path(source).stem
    options = PipelineOptions(preset=preset, steps=steps, from_stage=from_stage, until_stage=until_stage, force=force, gpu=gpu, backend=backend,
                              engine="known" if cameras is not None and engine == "colmap" else engine,
                              cameras=cameras, frame_count=frames)
    _run(source, run_dir, options, as_json)


def demo_command(
    out: Path = typer.Option(DEFAULT_RUNS / "demo", "-o", "--out", help="Run folder."),
    views: int = typer.Option(24, help="Synthetic views to render."),
    steps: int = typer.Option(None, help="Training steps (default: the demo preset's)."),
    backend: str = typer.Option("auto", help="Rasterizer: auto | gsplat | reference."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document with the result."),
) -> None:
    """The whole pipeline on a synthetic capture it renders itself (no data needed; CPU-friendly)."""
    from splatforge.pipeline import PipelineOptions
    from splatforge.rundir import RunDir
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    run = RunDir(out).create()
    capture = run.input / "synthetic"
    if not (capture / "transforms.json").exists():
        make_synthetic_capture(capture, SyntheticOptions(n_views=views, width=320, height=240, seed=0))
    # Small enough for a 2-core CPU in a few minutes: 80x60 training images, at most 6000 Gaussians.
    options = PipelineOptions(preset="demo", steps=steps, backend=backend, downscale=4,
                              max_gaussians=6000)
    _run(capture / "images", run.root, options, as_json)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("demo")(demo_command)
