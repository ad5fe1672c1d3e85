"""`splatforge report RUN`: (re)build report.json and report.html of a run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run: Path = typer.Argument(..., help="The run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Write report.json and report.html (self-contained, works offline) for a run folder."""
    from splatforge.console import console, emit_json
    from splatforge.errors import InputError, SplatforgeError
    from splatforge.report import summary_lines
    from splatforge.report.stage import REPORT
    from splatforge.rundir import RunDir, read_json
    from splatforge.stage import run_stage

    try:
        rd = RunDir(run)
        if not rd.root.is_dir():
            raise InputError(f"{rd.root} is not a folder", "give the run folder that `splatforge run` created")
        if not rd.manifest.exists():
            raise InputError(f"{rd.root} has no run.json, so it is not a splatforge run folder",
                             "give the run folder that `splatforge run` created")
        run_stage(REPORT, rd)
        result = read_json(rd.report_json)
    except SplatforgeError as exc:
        from splatforge.cli import fail

        fail(exc, as_json)
        return
    if as_json:
        emit_json(result)
        return
    for line in summary_lines(result):
        console.print(line, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
