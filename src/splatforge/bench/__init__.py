"""`splatforge bench`: captures x presets x repeats, honest timings, tables, plots and regressions."""

from __future__ import annotations

from pathlib import Path

import typer


def bench_command(
    captures: list[str] = typer.Argument(..., help="Capture folders, videos or zips; or synthetic:N."),
    presets: str = typer.Option("fast,default,quality", help="Comma-separated training presets."),
    repeat: int = typer.Option(1, help="Runs per cell (median and spread are reported when > 1)."),
    out: Path = typer.Option(Path("bench"), "-o", "--out", help="Bench folder (re-running resumes it)."),
    baseline: Path = typer.Option(None, help="An earlier bench.json to compare with (regressions exit 1)."),
    steps: int = typer.Option(None, help="Override every preset's step count (for a quick look)."),
    backend: str = typer.Option("auto", help="Rasterizer: auto | gsplat | reference."),
    gpu: int = typer.Option(None, help="GPU index."),
    as_json: bool = typer.Option(False, "--json", help="Print bench.json."),
) -> None:
    """Every capture x preset, each measured in a fresh process; bench.json, bench.md, bench.html."""
    from splatforge.bench.runner import BenchOptions, run_bench
    from splatforge.cli import fail
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError

    options = BenchOptions(presets=[p.strip() for p in presets.split(",") if p.strip()], repeat=repeat,
                           steps=steps, backend=backend, gpu=gpu)
    try:
        data = run_bench(captures, out, options, baseline, log=lambda msg: console.print(msg))
    except SplatforgeError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json(data)
    else:
        console.print((out / "bench.md").read_text())
        console.print(f"written: {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.html'}")
    failed = [c for c in data["cells"] if not c.get("ok")]
    if data.get("regressions"):
        console.print(f"[red]{len(data['regressions'])} regression(s) against {baseline}[/]")
        raise typer.Exit(1)
    if failed:
        console.print(f"[red]{len(failed)} cell(s) failed; re-run the same command to retry them[/]")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
