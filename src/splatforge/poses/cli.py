"""`splatforge poses INPUT`: camera poses for an image folder or a run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def poses(
    input: Path = typer.Argument(..., help="An image folder or a run folder."),
    output: Path = typer.Option(None, "--output", "-o", help="Run folder (default: runs/<folder name>)."),
    engine: str = typer.Option("auto", "--engine", help="auto (the poses a transforms.json or sparse/0 beside the "
                               "photos holds, else colmap) | colmap (always new SfM) | vggt | known"),
    cameras: Path = typer.Option(None, "--cameras",
                                 help="Known cameras: transforms.json, COLMAP folder, or rig JSON/pickle."),
    triangulate: bool = typer.Option(False, "--triangulate",
                                     help="With --cameras: match features and triangulate points, poses fixed."),
    matching: str = typer.Option("auto", "--matching", help="auto | sequential | exhaustive | retrieval"),
    mapper: str = typer.Option("auto", "--mapper", help="auto | incremental | global"),
    max_image_size: int = typer.Option(1600, "--max-image-size", help="Longest side for feature extraction."),
    vggt_weights: Path = typer.Option(None, "--vggt-weights", help="VGGT checkpoint or local model folder."),
    threads: int = typer.Option(-1, "--threads", help="CPU threads (-1: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Estimate camera poses; write sparse/0, images_undistorted/, transforms.json and poses.json."""
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.poses import PoseOptions, estimate_poses
    from splatforge.poses.inputs import prepare_run

    try:
        try:
            options = PoseOptions(engine=engine, cameras=cameras, triangulate=triangulate, matching=matching,
                                  mapper=mapper, max_image_size=max_image_size, vggt_weights=vggt_weights,
                                  num_threads=threads)
        except ValueError as exc:
            from splatforge.errors import InputError

            raise InputError(str(exc), "see `splatforge poses --help`") from None
        run = prepare_run(input, output)
        with console.status("estimating camera poses…") as status, \
                run.stage("poses", options.to_dict()) as summary:
            result = estimate_poses(run, options,
                                    progress=lambda step, frac: status.update(f"poses: {step} ({frac:.0%})"))
            summary.update({k: getattr(result, k) for k in ("engine", "registered", "total", "points", "seconds")})
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"[bold green]placed {result.registered} of {result.total} photos[/] "
                  f"({result.points} points, reprojection error "
                  f"{result.mean_reprojection_error or 0:.2f} px) -> {run.root}")
    for name in result.unregistered:
        console.print(f"  [yellow]not placed:[/] {name}: {result.unregistered_reasons.get(name, 'unknown')}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"  {result.matching or result.engine}; {steps}")


def register(app: typer.Typer) -> None:
    app.command("poses")(poses)
