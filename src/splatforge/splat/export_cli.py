"""`splatforge export RUN [-o FILE] [--format F] [--sh-degree N]`."""

from __future__ import annotations

from pathlib import Path

import typer

FORMAT_HELP = "ply | ply-compressed | splat | spz | sog (default: from -o's ending; without -o: ply and the compact format)"


def export_command(
    run: Path = typer.Argument(..., help="Run folder with checkpoints/."),
    out: Path | None = typer.Option(None, "-o", "--out",
                                    help="One file to write; its ending picks the format (.ply, .compressed.ply, "
                                         ".splat, .spz, .sog). Default: RUN/export/scene.<format>."),
    format_name: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    sh_degree: int | None = typer.Option(None, "--sh-degree",
                                         help="Keep spherical harmonics up to this degree, 0..3 (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Write the newest checkpoint as splat files: the standard 3DGS PLY (every tool) and compact formats
    for the web (SOG, SPZ, compressed PLY, .splat); `splatforge view` opens each of them."""
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError

    try:
        from splatforge.rundir import RunDir
        from splatforge.splat.export import ExportOptions, export_to

        rd = RunDir(run)
        if out is not None:
            written = [export_to(rd, out, format_name, sh_degree)]
            result = {"ok": True, **written[0], "files": {written[0]["format"]: written[0]}}
            if written[0]["format"] == "ply":
                result["ply"] = written[0]["path"]  # the key this command's JSON always had
        else:
            from splatforge.splat.stages import EXPORT
            from splatforge.stage import run_stage

            options = ExportOptions(formats=(format_name,) if format_name else ExportOptions().formats,
                                    sh_degree=sh_degree)
            summary = run_stage(EXPORT, rd, options)
            written = list(summary["files"].values())
            result = {"ok": True, **summary}
    except SplatforgeError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json(result)
        return
    for item in written:
        console.print(f"[green]exported[/] {item['path']} ({item['bytes'] / 1e6:.1f} MB, {item['format']}, "
                      f"{item['seconds']:.1f} s)")
