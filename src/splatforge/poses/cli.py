"""`splatforge poses INPUT`: camera poses for an image folder or a run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def poses(
    input: Path = typer.Argument(..., help="An image folder or a run folder."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<capture name>)."),
    engine: str = typer.Option(None, "--engine", help="auto (the poses a transforms.json or sparse/0 beside the "
                               "photos holds, else colmap; the default) | colmap (always new SfM) | vggt | known"),
    cameras: Path = typer.Option(None, "--cameras",
                                 help="Known cameras: transforms.json, COLMAP folder, or rig JSON/pickle."),
    triangulate: bool = typer.Option(None, "--triangulate",
                                     help="With --cameras: match features and triangulate points, poses fixed."),
    matching: str = typer.Option(None, "--matching", help="auto | sequential | exhaustive | retrieval"),
    mapper: str = typer.Option(None, "--mapper", help="auto | incremental | global"),
    max_image_size: int = typer.Option(None, "--max-image-size", help="Longest side for feature extraction."),
    vggt_weights: Path = typer.Option(None, "--vggt-weights", help="VGGT checkpoint or local model folder."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all)."),
    assignments: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any pose option, e.g. --set max_num_features=8192."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Estimate camera poses; write sparse/0, images_undistorted/, transforms.json and poses.json."""
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.options import from_dict, parse_assignments
    from splatforge.pipeline_cli import default_run_dir, progress_display
    from splatforge.poses.inputs import prepare_run
    from splatforge.poses.options import PoseOptions
    from splatforge.poses.stage import POSES
    from splatforge.rundir import read_json
    from splatforge.stage import run_stage

    try:
        named = {"engine": engine, "cameras": cameras, "triangulate": triangulate, "matching": matching,
                 "mapper": mapper, "max_image_size": max_image_size, "vggt_weights": vggt_weights,
                 "num_threads": threads}
        changes = {k: v for k, v in named.items() if v is not None}
        changes.update(parse_assignments(assignments))
        options = from_dict(PoseOptions, changes, "poses")
        is_run = (Path(input) / "run.json").exists() or (Path(input) / "frames").is_dir()
        run = prepare_run(input, out if out is not None or is_run else default_run_dir(input))
        with progress_display(enabled=not as_json) as events:
            run_stage(POSES, run, options, events)
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    result = read_json(run.poses_json)
    if as_json:
        emit_json({"ok": True, **result})
        return
    console.print(f"[bold green]placed {result['registered']} of {result['total']} photos[/] "
                  f"({result['points']} points, reprojection error "
                  f"{result['mean_reprojection_error'] or 0:.2f} px) -> {run.root}")
    for name in result["unregistered"]:
        console.print(f"  [yellow]not placed:[/] {name}: {result['unregistered_reasons'].get(name, 'unknown')}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
    console.print(f"  {result['matching'] or result['engine']}; {steps}")


def register(app: typer.Typer) -> None:
    app.command("poses")(poses)
