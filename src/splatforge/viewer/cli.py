"""`splatforge view RUN|PLY`: serve the splat on a local web page (Spark on three.js) until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import typer


def view(
    target: Path = typer.Argument(..., help="A run folder (with export/) or a splat file: .ply, .compressed.ply, "
                                             ".splat, .spz or .sog."),
    format_name: str | None = typer.Option(None, "--format", "-f",
                                           help="Which export of a run folder to show: ply | ply-compressed | "
                                                "splat | spz | sog (default: the compact one, else the PLY)."),
    port: int = typer.Option(8090, "--port", "-p", help="Port to listen on; 0 picks a free one."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open the page in the default browser."),
    as_json: bool = typer.Option(False, "--json", help="Print {url, splat, format, transforms} as JSON once serving starts."),
) -> None:
    """Show a splat in the browser: orbit controls, and the run's camera path when it has one."""
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.viewer.camera_path import resolve_input
    from splatforge.viewer.server import ServerOptions, make_server, server_url

    try:
        source = resolve_input(target, format_name)
        server = make_server(source, ServerOptions(host=host, port=port))
    except SplatforgeError as exc:
        from splatforge.cli import fail

        fail(exc, as_json)
        return
    url = server_url(server)
    if as_json:
        emit_json({"url": url, "splat": str(source.splat), "format": source.format.name,
                   "transforms": str(source.transforms) if source.transforms else None})
    else:
        print(url, flush=True)
    console.print(f"Serving [bold]{source.splat}[/] at {url}  (Ctrl-C to stop)")
    if source.transforms is None:
        console.print("[yellow]no transforms.json found beside the splat: showing it without a camera path[/]")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view)
