"""`splatforge frames VIDEO -o DIR` and `splatforge check INPUT`: the capture commands."""

from __future__ import annotations

from pathlib import Path

import typer


def frames(
    video: Path = typer.Argument(..., help="The video file."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder to write frames/0001.jpg ... and frames.json into."
    ),
    count: int | None = typer.Option(
        None, "--count", "-n", help="Keep this many frames (one per time window)."
    ),
    fps: float | None = typer.Option(None, "--fps", help="Keep this many frames per second of video."),
    max_size: int | None = typer.Option(None, "--max-size", help="Downscale frames to this long side (px)."),
    as_json: bool = typer.Option(False, "--json", help="Print frames.json on stdout."),
) -> None:
    """Extract the sharpest frame of each time window of a video (automatic count: 60-150)."""
    from splatforge.capture.frames import FrameOptions
    from splatforge.capture.stages import FRAMES
    from splatforge.console import console, emit_json
    from splatforge.errors import InputError, SplatforgeError
    from splatforge.pipeline_cli import progress_display
    from splatforge.rundir import RunDir, read_json
    from splatforge.stage import run_stage

    run = RunDir(out)
    try:
        if count is not None and fps is not None:
            raise InputError(
                "--count and --fps were both given.", "Use one of them (or neither for automatic)."
            )
        if not Path(video).is_file():
            raise InputError(f"{video} is not a video file", "give the path of a video (mp4, mov, ...)")
        run.create().update_manifest(input=str(Path(video).expanduser().resolve()))
        with progress_display(enabled=not as_json) as events:
            run_stage(FRAMES, run, FrameOptions(count=count, fps=fps, max_size=max_size), events)
    except SplatforgeError as exc:
        from splatforge.cli import fail

        fail(exc, as_json)
        return
    result = read_json(run.frames_json) or {}
    if as_json:
        emit_json(result)
        return
    w, h = result.get("size") or (0, 0)
    console.print(
        f"kept [bold]{len(result.get('frames', []))}[/] frames ({w}x{h}) of {result.get('decoded_frames')} in "
        f"{result.get('seconds', 0):.1f} s -> {run.frames}"
    )
    console.print(f"why: {result.get('reason')}")


def check(
    input: Path = typer.Argument(..., help="A folder of images or a video file."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON on stdout."),
    report: Path | None = typer.Option(
        None, "--report", help="Also write a contact sheet (PNG + HTML) here."
    ),
    ordered: bool | None = typer.Option(
        None, "--ordered/--unordered", help="Images are a sequence (default: decided from the images)."
    ),
    workers: int = typer.Option(2, "--workers", help="Threads to use."),
) -> None:
    """Predict in seconds whether a capture will reconstruct, with advice tied to images."""
    from splatforge.capture.check import CheckOptions, check_capture
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError

    try:
        result = check_capture(input, CheckOptions(ordered=ordered, workers=workers), report_dir=report)
    except SplatforgeError as exc:
        from splatforge.cli import fail

        fail(exc, as_json)
        return
    if as_json:
        emit_json(result.to_dict())
    else:
        print_report(result)
    if report is not None:
        console.print(f"contact sheet: {result.summary['report']}")


def print_report(result) -> None:
    """Human summary on stderr: verdict, score, advice (also used by the pipeline's gate)."""
    from splatforge.console import console

    colour = {"good": "green", "risky": "yellow", "will-fail": "red"}[result.verdict]
    s = result.summary
    console.print(
        f"[bold {colour}]{result.verdict}[/] (score {result.score}/100): {s['count']} images, "
        f"{s['largest_component']} in the largest matched group, checked in {s['seconds']['total']:.1f} s"
    )
    for line in result.advice:
        console.print(f"  - {line}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("frames")(frames)
    app.command("check")(check)
