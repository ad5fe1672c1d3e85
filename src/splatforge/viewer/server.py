"""A small local web server for the viewer page (standard library only).

It serves exactly these paths and nothing else:

    /                      redirect to /index.html?ply=scene.<ending>&cameras=cameras.json
    /index.html, ...       the page files in `viewer_static_dir()` (PAGE_FILES)
    /node_modules/<pkg>/   files of the npm packages the page imports (SERVED_PACKAGES)
    /scene.<ending>        the splat being viewed, under its format's ending (.ply, .compressed.ply,
                           .splat, .spz, .sog): Spark picks its decoder by the URL's ending
    /cameras.json          `camera_path_json(...)` of the run

The page reads its data URLs from the query string, so the job service can mount
`viewer_static_dir()` (node_modules lies inside it) and point the same page at any job's files.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import shutil
import threading
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from splatforge.errors import InputError
from splatforge.viewer.camera_path import ViewerInput, camera_path, camera_path_json, resolve_input

log = logging.getLogger(__name__)

PAGE_FILES = ("index.html", "viewer.js", "viewer.css")
# Packages imported by the page at run time (Spark's module bundles its own dependencies).
SERVED_PACKAGES = ("three", "@sparkjsdev/spark")
# Files the page needs from each package; checked up front so a half-installed tree fails early.
REQUIRED_ASSETS = (
    "three/build/three.module.js",
    "three/build/three.core.js",
    "three/examples/jsm/controls/OrbitControls.js",
    "@sparkjsdev/spark/dist/spark.module.js",
)
_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".json": "application/json", ".map": "application/json", ".wasm": "application/wasm",
          ".ply": "application/octet-stream", ".splat": "application/octet-stream",
          ".spz": "application/octet-stream", ".sog": "application/zip"}


def viewer_static_dir() -> Path:
    """The folder with the page files (index.html, viewer.js) and the npm packages in node_modules/."""
    return Path(__file__).resolve().parent / "web"


def check_viewer_assets(static_dir: Path | None = None) -> Path:
    """The node_modules folder of the page, or an InputError saying how to install it."""
    static_dir = Path(static_dir) if static_dir is not None else viewer_static_dir()
    modules = static_dir / "node_modules"
    missing = [a for a in REQUIRED_ASSETS if not (modules / a).is_file()]
    if missing:
        raise InputError(
            f"the viewer's JavaScript packages are not installed ({modules / missing[0]} is missing)",
            "run ./setup.sh in the splatforge checkout (it runs `npm ci` in src/splatforge/viewer/web; "
            "needs Node.js and npm)")
    return modules


@dataclass
class ViewerSite:
    """What one viewer server shows. `cameras` is the cameras.json document (computed once);
    `splat_name` the URL name of the splat (scene + its format's ending)."""

    splat: Path
    cameras: dict
    static_dir: Path = field(default_factory=viewer_static_dir)
    splat_name: str = "scene.ply"

    @property
    def page(self) -> str:
        """The page's path and query string."""
        return f"/index.html?ply={self.splat_name}&cameras=cameras.json"

    def resolve(self, url_path: str) -> Path | bytes | None:
        """The file (or the bytes) for a request path; None for anything not served."""
        parts = [p for p in urllib.parse.unquote(url_path).split("/") if p]
        if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
            return None
        if parts == [self.splat_name]:
            return self.splat
        if parts == ["cameras.json"]:
            return (json.dumps(self.cameras) + "\n").encode()
        if len(parts) == 1 and parts[0] in PAGE_FILES:
            return _inside(self.static_dir / parts[0], self.static_dir)
        if len(parts) >= 2 and parts[0] == "node_modules":
            modules = self.static_dir / "node_modules"
            for package in SERVED_PACKAGES:
                depth = package.count("/") + 1
                if "/".join(parts[1:1 + depth]) == package and len(parts) > 1 + depth:
                    return _inside(modules.joinpath(*parts[1:]), modules / package)
        return None


def _inside(path: Path, root: Path) -> Path | None:
    """`path` if it is a file under `root` after resolving links, else None."""
    try:
        real = path.resolve(strict=True)
        root = root.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_file() and real.is_relative_to(root) else None


def _handler_for(site: ViewerSite) -> type[BaseHTTPRequestHandler]:
    class ViewerHandler(BaseHTTPRequestHandler):
        server_version = "splatforge-viewer"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._respond(send_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._respond(send_body=False)

        def _respond(self, send_body: bool) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("", "/"):
                self.send_response(HTTPStatus.FOUND)
                self.send_header("Location", site.page)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            found = site.resolve(url.path)
            if found is None:
                self.send_error(HTTPStatus.NOT_FOUND, "not served by the splatforge viewer")
                return
            suffix = Path(url.path).suffix.lower()
            ctype = _TYPES.get(suffix) or mimetypes.guess_type(url.path)[0] or "application/octet-stream"
            try:
                if isinstance(found, bytes):
                    self._send_headers(ctype, len(found))
                    if send_body:
                        self.wfile.write(found)
                    return
                with found.open("rb") as f:
                    self._send_headers(ctype, found.stat().st_size)
                    if send_body:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
            except (BrokenPipeError, ConnectionResetError):  # the browser went away mid-file
                pass
            except OSError as exc:  # e.g. the PLY was deleted or replaced while serving
                log.warning("viewer: cannot read %s: %s", found, exc)
                self.send_error(HTTPStatus.NOT_FOUND, "file vanished")

        def _send_headers(self, ctype: str, length: int) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
            log.debug("viewer %s - %s", self.address_string(), format % args)

    return ViewerHandler


@dataclass(frozen=True)
class ServerOptions:
    """Where the viewer listens. port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 8090


def make_server(view: ViewerInput, options: ServerOptions = ServerOptions(),
                static_dir: Path | None = None) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) HTTP server for `view`. Raises InputError with advice when the
    npm packages are missing or the port is taken."""
    static_dir = Path(static_dir) if static_dir is not None else viewer_static_dir()
    check_viewer_assets(static_dir)
    site = ViewerSite(splat=view.splat, cameras=camera_path(view), static_dir=static_dir,
                      splat_name="scene" + view.format.suffix)
    try:
        server = ThreadingHTTPServer((options.host, options.port), _handler_for(site))
    except OSError as exc:
        raise InputError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}",
                         "pick another port with --port (or --port 0 for any free one)") from None
    server.daemon_threads = True
    server.viewer_site = site  # for server_url
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    """The page's URL, with its query string, for a server from `make_server`."""
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}{server.viewer_site.page}"


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Start serving in a daemon thread (tests, the job service); stop with `server.shutdown()`."""
    thread = threading.Thread(target=server.serve_forever, name="splatforge-viewer", daemon=True)
    thread.start()
    return thread


__all__ = ["ViewerSite", "ServerOptions", "viewer_static_dir", "check_viewer_assets", "camera_path_json",
           "resolve_input", "make_server", "server_url", "serve_in_thread"]
