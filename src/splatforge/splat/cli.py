"""`splatforge train` and `splatforge export`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
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
    preset: str = typer.Option("default", "--preset", help="fast | default | quality | mcmc"),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: the preset's)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from the newest checkpoint."),
    backend: str = typer.Option("auto", "--backend", help="auto | gsplat | reference"),
    device: str | None = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if present)."),
    downscale: float = typer.Option(1.0, "--downscale", help="Divide image sizes by this."),
    test_every: int = typer.Option(8, "--test-every", help="Hold out every n-th image (0: none)."),
    max_gaussians: int | None = typer.Option(None, "--max-gaussians", help="Cap on the number of Gaussians."),
    sh_degree: int = typer.Option(3, "--sh-degree", help="Spherical-harmonics degree 0..3."),
    strategy: str | None = typer.Option(None, "--strategy", help="default | mcmc (default: the preset's)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Cameras per step."),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(2000, "--checkpoint-every"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Train a Gaussian splat on a run folder (or on a scene, into -o RUN).

    Cameras with OPENCV distortion are undistorted to PINHOLE when the images are loaded (OpenCV).
    Ctrl-C or SIGTERM writes a checkpoint and stops; running the command again resumes from it.
    """
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError

    try:
        from splatforge.rundir import RunDir
        from splatforge.splat.trainer import TrainOptions, train

        run = RunDir(_prepare_run(source, out))
        options = TrainOptions(preset=preset, steps=steps, backend=backend, device=device, resume=resume,
                               test_every=test_every, downscale=downscale, sh_degree=sh_degree, seed=seed,
                               checkpoint_every=checkpoint_every, max_gaussians=max_gaussians,
                               strategy=strategy, batch_size=batch_size, show_progress=not as_json)
        from dataclasses import asdict

        with run.stage("train", config=asdict(options)) as summary:
            result = train(run, options)
            summary.update({"steps": result.steps, "eval": result.eval, "num_gaussians": result.num_gaussians})
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"ok": True, "run": str(run.root), **result.to_dict()})
    else:
        ev = result.eval
        console.print(f"[green]trained[/] {result.steps} steps in {result.seconds:.1f} s on {result.backend}: "
                      f"PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.3f}, {result.num_gaussians:,} Gaussians "
                      f"-> {run.train_json}")


def export_command(
    run: Path = typer.Argument(..., help="Run folder with checkpoints/."),
    out: Path | None = typer.Option(None, "-o", "--out", help="PLY file (default: RUN/export/scene.ply)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Write the newest checkpoint as a standard 3DGS PLY (SuperSplat, Spark, nerfstudio)."""
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError

    try:
        from splatforge.rundir import RunDir
        from splatforge.splat.export import export_ply

        rd = RunDir(run)
        with rd.stage("export") as summary:
            path = export_ply(rd, out)
            summary.update({"ply": str(path), "bytes": path.stat().st_size})
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json({"ok": True, "ply": str(path), "bytes": path.stat().st_size})
    else:
        console.print(f"[green]exported[/] {path} ({path.stat().st_size / 1e6:.1f} MB)")
