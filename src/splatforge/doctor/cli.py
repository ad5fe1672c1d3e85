"""The `doctor` command: run the checks, print one line per check, exit 1 when the requested use is broken."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from splatforge.doctor.model import FAIL, OK, USES, WARN

_STYLE = {OK: "[green] ok [/]", WARN: "[yellow]warn[/]", FAIL: "[bold red]FAIL[/]"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print every check as one JSON document on stdout."),
    deep: bool = typer.Option(
        False, "--deep", help="Also load (compiling if needed) gsplat's CUDA extension and render one tile."
    ),
    use: list[str] = typer.Option(
        None,
        "--for",
        help=f"What the machine must be ready for: {', '.join(USES)} (repeatable; default cpu).",
    ),
    gpu: bool = typer.Option(
        False, "--gpu", help="Shorthand for --for train-gpu: a missing GPU is a failure."
    ),
    workspace: Path = typer.Option(Path("."), "--workspace", help="Folder whose free disk space matters."),
) -> None:
    """Check Python, torch/CUDA, GPUs, the gsplat toolchain, libraries, disk/RAM/shm and the job service."""
    from rich.markup import escape

    from splatforge.console import console, emit_json
    from splatforge.doctor.checks import exit_code, run_checks
    from splatforge.doctor.model import DoctorOptions

    uses = tuple(dict.fromkeys([*(use or []), *(["train-gpu"] if gpu else [])])) or ("cpu",)
    bad = [u for u in uses if u not in USES]
    if bad:
        raise typer.BadParameter(f"unknown use {bad[0]!r}; choose from {', '.join(USES)}", param_hint="--for")
    start = time.perf_counter()
    checks = run_checks(options=DoctorOptions(uses=uses, deep=deep, workspace=workspace.resolve()))
    seconds = time.perf_counter() - start
    code = exit_code(checks)
    if as_json:
        emit_json({"ok": code == 0, "uses": list(uses), "deep": deep, "seconds": round(seconds, 2),
                   "checks": [c.to_dict() for c in checks]})  # fmt: skip
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            line = f"{_STYLE[c.status]}  {c.name:<{width}}  {escape(c.detail)}"
            if c.fix and c.status != OK:
                line += f"  [cyan]-> fix:[/] {escape(c.fix)}"
            console.print(line, soft_wrap=True)
        n_warn = sum(c.status == WARN for c in checks)
        n_fail = sum(c.status == FAIL for c in checks)
        verdict = "[green]ready[/]" if code == 0 else "[bold red]not ready[/]"
        console.print(f"{verdict} for {', '.join(uses)}: {n_fail} failure(s), {n_warn} warning(s) "
                      f"({seconds:.1f} s)")  # fmt: skip
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
