"""The `splatforge` command line: a thin shell over each stage's public function.

Each stage package owns its commands in `splatforge/<stage>/cli.py`, which exposes
`register(app: typer.Typer)`. Heavy imports (torch, pycolmap, cv2) happen inside the commands, so
`splatforge --help` stays instant.
"""

from __future__ import annotations

import importlib
import sys

import typer

from splatforge import __version__
from splatforge.console import console, emit_json, setup_logging
from splatforge.errors import SplatforgeError

app = typer.Typer(
    name="splatforge",
    help="Photos or a video in; camera poses, a trained Gaussian splat, a PLY, a report and a viewer out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: this typer's rich panels print `<bool>` after every flag, which reads as if the
    # flag took a value.
    rich_markup_mode=None,
)

# Order = order in --help. Each module registers its own commands.
COMMAND_MODULES = (
    "splatforge.pipeline_cli",  # run, demo
    "splatforge.capture.cli",  # frames, check
    "splatforge.poses.cli",  # poses
    "splatforge.splat.cli",  # train, export
    "splatforge.report.cli",  # report
    "splatforge.viewer.cli",  # view
    "splatforge.service.cli",  # serve
    "splatforge.doctor",  # doctor
    "splatforge.bench",  # bench
)


def _version(value: bool) -> None:
    if value:
        print(f"splatforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug messages."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    setup_logging(verbose=verbose, quiet=quiet)


def _broken_stage(name: str, exc: BaseException) -> None:
    """A stage whose module cannot be imported (a broken install) must not take the other commands
    down with it: `splatforge doctor` in particular has to work in a broken environment."""
    _load_errors[name] = f"{type(exc).__name__}: {exc}"


_load_errors: dict[str, str] = {}


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that stage is not part of this install
                continue
            _broken_stage(name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - reported by `splatforge doctor` and in --help
            _broken_stage(name, exc)
            continue
        module.register(app)
    if _load_errors:
        broken = "; ".join(f"{n}: {err[:160]}" for n, err in _load_errors.items())
        app.info.epilog = f"Some commands could not be loaded ({broken}). Run `splatforge doctor` to find out why."


_register_all()


def fail(exc: SplatforgeError, as_json: bool = False) -> None:
    """Report a user-facing error (as JSON when asked) and exit with its code."""
    if as_json:
        emit_json({"ok": False, **exc.to_dict()})
    console.print(f"[bold red]error:[/] {exc.message}")
    if exc.advice:
        console.print(f"[yellow]what to do:[/] {exc.advice}")
    raise typer.Exit(exc.exit_code)


def main() -> None:
    try:
        app()
    except SplatforgeError as exc:  # a command that did not catch its own error
        console.print(f"[bold red]error:[/] {exc.message}")
        if exc.advice:
            console.print(f"[yellow]what to do:[/] {exc.advice}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
