"""`splatforge train` and `splatforge export`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from splatforge.splat.export_cli import export_command

    app.command("train")(train_command)
    app.command("export")(export_command)


def _prepare_run(source: Path, out: Path | None) -> Path:
    """A run folder to train in: `source` itself, or (a transforms.json / COLMAP model) copied into `out`.

    A scene given directly is read and written as `out/transforms.json` (+ points.ply); its images stay
    where they are (absolute paths).
    """
    from splatforge.errors import InputError
    from splatforge.poses.existing import training_run_from_scene

    source = Path(source)
    is_run = source.is_dir() and (source / "transforms.json").exists() and (out is None or out == source)
    if is_run:
        return source
    if out is None:
        if source.is_dir() and (source / "run.json").exists():
            raise InputError(f"{source} is a run folder without transforms.json", "run the pose stage first")
        raise InputError(f"{source} is a scene, not a run folder", "give -o RUN: the run folder to train in")
    return training_run_from_scene(source, out).root  # distorted COLMAP cameras are undistorted there


def train_command(
    source: Path = typer.Argument(..., help="A run folder, or a scene: transforms.json or COLMAP model folder."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Run folder to create when SOURCE is a scene."),
    preset: str | None = typer.Option(None, "--preset", help="fast | default | quality | mcmc | demo (default: default)."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: the preset's; schedule stretched)."),
    resume: bool | None = typer.Option(None, "--resume/--no-resume", help="Continue from the newest checkpoint (default)."),
    backend: str | None = typer.Option(None, "--backend", help="auto | gsplat | reference"),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 (default: auto)."),
    gpus: str | None = typer.Option(None, "--gpus", help="Several GPUs for one scene, e.g. 0,1,2,3 or all: one "
                                    "process per GPU, one view per GPU per step, steps / GPU count."),
    downscale: float | None = typer.Option(None, "--downscale", help="Divide image sizes by this."),
    test_every: int | None = typer.Option(None, "--test-every", help="Hold out every n-th image (0: none; default 8)."),
    max_gaussians: int | None = typer.Option(None, "--max-gaussians", help="Cap on the number of Gaussians."),
    sh_degree: int | None = typer.Option(None, "--sh-degree", help="Spherical-harmonics degree 0..3."),
    strategy: str | None = typer.Option(None, "--strategy", help="default | mcmc (default: the preset's)."),
    seed: int | None = typer.Option(None, "--seed"),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints (1000)."),
    checkpoint_every_s: float | None = typer.Option(None, "--checkpoint-every-s", help="Seconds between checkpoints (60)."),
    assignments: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any training option or recipe key, e.g. "
                                           "--set batch_size=2 --set strategy.refine_every=50."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Train a Gaussian splat on a run folder (or on a scene, into -o RUN).

    Cameras with OPENCV distortion are undistorted to PINHOLE when the images are loaded (OpenCV).
    Ctrl-C or SIGTERM writes a checkpoint and stops; running the command again resumes from it.
    """
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.options import from_dict, parse_assignments
    from splatforge.pipeline_cli import progress_display
    from splatforge.rundir import RunDir, read_json
    from splatforge.splat.config import TrainOptions
    from splatforge.splat.stages import TRAIN
    from splatforge.stage import run_stage

    named = {"preset": preset, "steps": steps, "resume": resume, "backend": backend, "device": device, "gpus": gpus,
             "downscale": downscale, "test_every": test_every, "strategy": strategy, "sh_degree": sh_degree,
             "strategy.cap_max": max_gaussians, "seed": seed, "checkpoint_every": checkpoint_every,
             "checkpoint_every_s": checkpoint_every_s, "show_progress": not as_json}
    changes = {k: v for k, v in named.items() if v is not None}
    try:
        changes.update(parse_assignments(assignments))
        options = from_dict(TrainOptions, changes, "train")
        run = RunDir(_prepare_run(source, out))
        with progress_display(enabled=False) as events:  # the trainer draws its own bar
            run_stage(TRAIN, run, options, events)
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    result = read_json(run.train_json)
    if as_json:
        emit_json({"ok": True, "run": str(run.root), **result})
    else:
        ev = result["eval"]
        console.print(f"[green]trained[/] {result['steps']} steps in {result['seconds']:.1f} s on {result['backend']}: "
                      f"PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, {result['num_gaussians']:,} Gaussians "
                      f"-> {run.train_json}")
