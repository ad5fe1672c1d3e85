"""`splatforge view RUN|PLY`: serve the splat on a local web page (Spark on three.js) until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import typer


def view(
    target: Path = typer.Argument(..., help="A run folder (with export/scene.ply) or a 3DGS .ply file."),
    port: int = typer.Option(8090, "--port", "-p", help="Port to listen on; 0 picks a free one."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open the page in the default browser."),
    as_json: bool = typer.Option(False, "--json", help="Print {url, ply, cameras} as JSON once serving starts."),
) -> None:
    """Show a splat in the browser: orbit controls, and the run's camera path when it has one."""
    from splatforge.console import console, emit_json
    from splatforge.errors import SplatforgeError
    from splatforge.viewer.camera_path import resolve_input
    from splatforge.viewer.server import ServerOptions, make_server, server_url

    try:
        source = resolve_input(target)
        server = make_server(source, ServerOptions(host=host, port=port))
    except SplatforgeError as exc:
        from splatforge.cli import fail

        fail(exc, as_json)
        return
    url = server_url(server)
    if as_json:
        emit_json({"url": url, "ply": str(source.ply),
                   "transforms": str(source.transforms) if source.transforms else None})
    else:
        print(url, flush=True)
    console.print(f"Serving [bold]{source.ply}[/] at {url}  (Ctrl-C to stop)")
    if source.transforms is None:
        console.print("[yellow]no transforms.json found beside the PLY: showing it without a camera path[/]")
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
