"""`splatforge view`: camera path, the local server's file rules, and the page in Debian's Chromium.

Test scene: a COLMAP-style y-down world. A ball of coloured Gaussians at the origin (red on its top
half, i.e. y < 0, blue below) above a grey ground disc at y = +0.6, seen by 12 cameras on a circle
above the ball, looking at it with their up = -y.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from splatforge.errors import InputError
from splatforge.scene.conventions import look_at_w2c, opengl_c2w_from_w2c
from splatforge.viewer.camera_path import PathCamera, axes_focus, camera_path_json, resolve_input
from splatforge.viewer.server import (
    REQUIRED_ASSETS,
    ServerOptions,
    ViewerSite,
    check_viewer_assets,
    make_server,
    serve_in_thread,
    server_url,
    viewer_static_dir,
)

SH_C0 = 0.28209479177387814
BACKGROUND = "#101418"
UP = np.array([0.0, -1.0, 0.0])
CAMERA_RING = dict(radius=3.0, height=-1.0, count=12)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-dev-shm-usage",
]


def _format_skip_reason(browser: bool = True) -> str | None:
    """Why the compact-format tests cannot run here (they need splat-transform, in Node.js), or None."""
    from splatforge.splat.formats import splat_transform

    reason = _browser_skip_reason() if browser else None
    if reason is None and splat_transform.find_node() is None:
        reason = "Node.js is not installed (splat-transform writes and reads the compact formats)"
    if reason is None and not (splat_transform.node_modules_dir() / splat_transform.PACKAGE).is_dir():
        reason = "the npm package @playcanvas/splat-transform is not installed (run ./setup.sh)"
    return reason


def write_test_splat(path: Path, n_ball: int = 3000, n_ground: int = 1500, seed: int = 0) -> np.ndarray:
    """A small standard-layout 3DGS PLY (binary, 62 float32 properties). Returns the centres (N, 3)."""
    rng = np.random.default_rng(seed)
    ball = rng.normal(size=(n_ball, 3))
    ball = ball / np.linalg.norm(ball, axis=1, keepdims=True) * (0.5 * rng.uniform(0.6, 1.0, (n_ball, 1)) ** 0.5)
    top = ball[:, 1] < 0  # y-down world: negative y is up
    ball_rgb = np.where(top[:, None], [0.9, 0.15, 0.1], [0.1, 0.3, 0.95]) + rng.normal(0, 0.03, (n_ball, 3))
    angle = rng.uniform(0, 2 * np.pi, n_ground)
    rad = 1.2 * np.sqrt(rng.uniform(0, 1, n_ground))
    ground = np.stack([rad * np.cos(angle), np.full(n_ground, 0.6), rad * np.sin(angle)], axis=1)
    ground_rgb = np.full((n_ground, 3), 0.55) + rng.normal(0, 0.05, (n_ground, 3))
    xyz = np.concatenate([ball, ground]).astype(np.float32)
    rgb = np.clip(np.concatenate([ball_rgb, ground_rgb]), 0, 1)
    n = len(xyz)
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(45)] + ["opacity", "scale_0", "scale_1", "scale_2"]
             + [f"rot_{i}" for i in range(4)])
    data = np.zeros((n, len(names)), dtype="<f4")
    col = {name: i for i, name in enumerate(names)}
    data[:, col["x"]:col["z"] + 1] = xyz
    data[:, col["f_dc_0"]:col["f_dc_2"] + 1] = (rgb - 0.5) / SH_C0
    data[:, col["opacity"]] = 3.0  # logit: sigmoid(3) = 0.95
    scales = np.concatenate([np.full((n_ball, 3), 0.04), np.full((n_ground, 3), 0.05)])
    scales[n_ball:, 1] = 0.005  # flat ground splats
    data[:, col["scale_0"]:col["scale_2"] + 1] = np.log(scales)
    data[:, col["rot_0"]] = 1.0  # identity quaternion (w, x, y, z)
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {n}\n"
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode("ascii") + data.tobytes())
    return xyz.astype(np.float64)


def ring_w2c(index: int) -> np.ndarray:
    a = 2 * np.pi * index / CAMERA_RING["count"]
    eye = np.array([CAMERA_RING["radius"] * np.sin(a), CAMERA_RING["height"], CAMERA_RING["radius"] * np.cos(a)])
    return look_at_w2c(eye, np.zeros(3), up=UP)


def write_test_run(root: Path, with_images: bool = True) -> Path:
    """A run folder with export/scene.ply and a transforms.json of the camera ring (tiny images)."""
    write_test_splat(root / "export" / "scene.ply")
    frames = []
    for i in range(CAMERA_RING["count"]):
        name = f"images_undistorted/{i + 1:04d}.png"
        if with_images:
            import cv2

            (root / "images_undistorted").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name), np.zeros((6, 8, 3), np.uint8))
        frames.append({"file_path": name, "transform_matrix": opengl_c2w_from_w2c(ring_w2c(i)).tolist()})
    transforms = {"camera_model": "PINHOLE", "fl_x": 400.0, "fl_y": 400.0, "cx": 320.0, "cy": 240.0,
                  "w": 640, "h": 480, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(transforms))
    return root


# --- camera path -----------------------------------------------------------------------------------


def test_camera_path_of_a_run_matches_the_ring(tmp_path):
    run = write_test_run(tmp_path / "run")
    doc = camera_path_json(run)
    assert doc["source"] == str((run / "transforms.json").resolve())
    assert [c["name"] for c in doc["cameras"]] == [f"images_undistorted/{i + 1:04d}.png" for i in range(12)]
    for i, cam in enumerate(doc["cameras"]):
        eye = np.array([3.0 * np.sin(2 * np.pi * i / 12), -1.0, 3.0 * np.cos(2 * np.pi * i / 12)])
        np.testing.assert_allclose(cam["position"], eye, atol=1e-9)
        np.testing.assert_allclose(cam["forward"], -eye / np.linalg.norm(eye), atol=1e-9)  # looks at the origin
        up = np.array(cam["up"])
        assert abs(np.dot(up, cam["forward"])) < 1e-9 and abs(np.linalg.norm(up) - 1) < 1e-9
        assert up[1] < -0.9  # y-down world: camera up is -y
        # The orbit pivot lies on the optical axis at the depth of the scene centre.
        pivot = np.array(cam["look_at"]) - eye
        np.testing.assert_allclose(np.cross(pivot, cam["forward"]), 0, atol=1e-9)
        assert np.dot(pivot, cam["forward"]) > 2.5
        assert cam["fov_y_deg"] == pytest.approx(2 * math.degrees(math.atan(240 / 400)), abs=1e-3)
        assert cam["aspect"] == pytest.approx(640 / 480)
    np.testing.assert_allclose(doc["up"], [0, -1, 0], atol=1e-9)
    assert doc["up_source"] == "cameras"
    centres = write_test_splat(tmp_path / "same.ply")
    np.testing.assert_allclose(doc["target"], np.median(centres, axis=0), atol=1e-6)
    assert 2.5 < doc["radius"] < 4.0  # median camera distance (sqrt 10) dominates the splat's extent
    json.dumps(doc)  # the document is plain JSON


def test_camera_path_without_images_reads_the_poses_from_json(tmp_path):
    with_images = camera_path_json(write_test_run(tmp_path / "a"))
    without = camera_path_json(write_test_run(tmp_path / "b", with_images=False))
    assert len(without["cameras"]) == 12
    for a, b in zip(with_images["cameras"], without["cameras"]):
        for key in ("position", "forward", "up", "look_at"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-9)
        assert a["fov_y_deg"] == pytest.approx(b["fov_y_deg"])


def test_ply_alone_gets_default_up_and_its_own_centre(tmp_path):
    centres = write_test_splat(tmp_path / "thing.ply")
    doc = camera_path_json(tmp_path / "thing.ply")
    assert doc["cameras"] == [] and doc["source"] is None
    assert doc["up"] == [0.0, -1.0, 0.0] and doc["up_source"] == "default"
    np.testing.assert_allclose(doc["target"], np.median(centres, axis=0), atol=1e-6)
    assert 0.5 < doc["radius"] < 1.5


@pytest.mark.skipif(_format_skip_reason(browser=False) is not None, reason=str(_format_skip_reason(browser=False)))
@pytest.mark.parametrize("format_name", ["ply-compressed", "splat"])
def test_camera_path_of_a_compact_splat(tmp_path, format_name):
    """A SuperSplat compressed PLY or a .splat alone: centre and size come from its decoded Gaussians."""
    from splatforge.splat.formats import FORMATS, read_splat, write_splat

    centres = write_test_splat(tmp_path / "src.ply")
    path = write_splat(read_splat(tmp_path / "src.ply"), tmp_path / f"thing{FORMATS[format_name].suffix}")
    doc = camera_path_json(path)
    assert doc["cameras"] == [] and doc["up_source"] == "default"
    np.testing.assert_allclose(doc["target"], np.median(centres, axis=0), atol=2e-3)
    assert 0.5 < doc["radius"] < 1.5


def test_resolve_input(tmp_path):
    run = write_test_run(tmp_path / "run")
    by_run = resolve_input(run)
    by_ply = resolve_input(run / "export" / "scene.ply")
    assert by_run.splat == by_ply.splat == (run / "export" / "scene.ply").resolve()
    assert by_run.transforms == by_ply.transforms == (run / "transforms.json").resolve()
    with pytest.raises(InputError, match="does not exist"):
        resolve_input(tmp_path / "missing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(InputError) as err:
        resolve_input(tmp_path / "empty_run")
    assert "export" in err.value.advice
    with pytest.raises(InputError, match="not a splat file"):
        resolve_input(run / "transforms.json")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a splat file") as err:
        resolve_input(tmp_path / "notes.txt")
    assert ".sog" in err.value.advice and ".spz" in err.value.advice
    with pytest.raises(InputError, match="scene.spz"):
        resolve_input(run, "spz")  # the run has only its PLY
    import gzip

    (run / "export" / "scene.spz").write_bytes(gzip.compress(b"NGSP" + bytes(12)))
    assert resolve_input(run).splat.name == "scene.spz"  # the compact format first
    assert resolve_input(run, "ply").splat.name == "scene.ply"
    assert resolve_input(run / "export" / "scene.spz").transforms == (run / "transforms.json").resolve()


def test_axes_focus():
    ring = read_path_cameras_from_w2c([ring_w2c(i) for i in range(12)])
    np.testing.assert_allclose(axes_focus(ring), [0, 0, 0], atol=1e-9)
    forward_facing = read_path_cameras_from_w2c(
        [look_at_w2c([x, 0, 0], [x, 0, 5], up=UP) for x in np.linspace(-1, 1, 5)])
    assert axes_focus(forward_facing) is None  # parallel axes: no meaningful focus


def read_path_cameras_from_w2c(poses: list[np.ndarray]) -> list[PathCamera]:
    from splatforge.scene.conventions import camera_center, viewing_direction

    return [PathCamera(str(i), camera_center(w), viewing_direction(w), -w[1, :3], 50.0, 1.5)
            for i, w in enumerate(poses)]


# --- server ----------------------------------------------------------------------------------------


def fake_static_dir(root: Path) -> Path:
    """A page folder with the page files and stand-ins for the npm files the server requires."""
    root.mkdir(parents=True)
    for name in ("index.html", "viewer.js", "viewer.css"):
        shutil.copy(viewer_static_dir() / name, root / name)
    (root / "package.json").write_text("{}")
    for asset in REQUIRED_ASSETS:
        (root / "node_modules" / asset).parent.mkdir(parents=True, exist_ok=True)
        (root / "node_modules" / asset).write_text(f"// {asset}\n")
    (root / "node_modules" / "fflate").mkdir()
    (root / "node_modules" / "fflate" / "index.js").write_text("// not served\n")
    (root / "secret.txt").write_text("secret")
    (root / "node_modules" / "three" / "build" / "escape.js").symlink_to(root / "secret.txt")
    return root


def test_site_serves_only_its_files(tmp_path):
    static = fake_static_dir(tmp_path / "web")
    site = ViewerSite(splat=tmp_path / "scene.ply", cameras={"cameras": []}, static_dir=static)
    assert site.resolve("/index.html") == (static / "index.html").resolve()
    assert site.resolve("/viewer.js") == (static / "viewer.js").resolve()
    assert site.resolve("/node_modules/three/build/three.module.js") is not None
    assert site.resolve("/node_modules/@sparkjsdev/spark/dist/spark.module.js") is not None
    assert site.resolve("/node_modules/%40sparkjsdev/spark/dist/spark.module.js") is not None
    assert site.resolve("/scene.ply") == tmp_path / "scene.ply"
    assert json.loads(site.resolve("/cameras.json")) == {"cameras": []}
    for denied in ("/package.json", "/secret.txt", "/node_modules/fflate/index.js", "/node_modules/three",
                   "/node_modules/three/../../secret.txt", "/node_modules/three/%2e%2e/%2e%2e/secret.txt",
                   "/node_modules/three/build/escape.js", "/node_modules/three/build/",
                   "/../web/index.html", "/./index.html", "/node_modules/three/build/..%2f..%2f..%2fsecret.txt",
                   "/node_modules/three\\..\\..\\secret.txt", "/etc/passwd", "//etc/passwd"):
        assert site.resolve(denied) is None, denied


@pytest.fixture
def served_run(tmp_path):
    """A viewer server (fake npm files) for a test run, serving in a thread; yields (server, run)."""
    run = write_test_run(tmp_path / "run")
    server = make_server(resolve_input(run), ServerOptions(port=0), static_dir=fake_static_dir(tmp_path / "web"))
    serve_in_thread(server)
    yield server, run
    server.shutdown()
    server.server_close()


def http_get(server, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request(method, path)  # http.client sends the path as given: no normalisation of ..
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_server_over_http(served_run):
    server, run = served_run
    url = server_url(server)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html?ply=scene.ply&cameras=cameras.json")
    status, headers, _ = http_get(server, "/")
    assert status == 302 and headers["location"] == "/index.html?ply=scene.ply&cameras=cameras.json"
    status, headers, body = http_get(server, "/index.html?ply=scene.ply&cameras=cameras.json")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"importmap" in body
    status, headers, body = http_get(server, "/node_modules/three/build/three.module.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")  # module scripts need it
    status, headers, body = http_get(server, "/scene.ply")
    assert status == 200 and body == (run / "export" / "scene.ply").read_bytes()
    assert int(headers["content-length"]) == len(body)
    status, _, body = http_get(server, "/cameras.json")
    assert status == 200 and len(json.loads(body)["cameras"]) == 12
    status, headers, body = http_get(server, "/scene.ply", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    for path in ("/node_modules/three/../../secret.txt", "/../secret.txt", "/package.json", "/favicon.ico"):
        assert http_get(server, path)[0] == 404, path
    assert http_get(server, "/index.html", method="POST")[0] == 501


def test_missing_node_modules_says_run_setup(tmp_path):
    (tmp_path / "index.html").write_text("<html></html>")
    with pytest.raises(InputError) as err:
        check_viewer_assets(tmp_path)
    assert "./setup.sh" in err.value.advice and "npm" in err.value.advice
    run = write_test_run(tmp_path / "run")
    with pytest.raises(InputError, match="not installed"):
        make_server(resolve_input(run), ServerOptions(port=0), static_dir=tmp_path)


def test_busy_port_gives_advice(served_run, tmp_path):
    server, run = served_run
    port = server.server_address[1]
    with pytest.raises(InputError) as err:
        make_server(resolve_input(run), ServerOptions(port=port), static_dir=tmp_path / "web")
    assert "--port" in err.value.advice


@pytest.mark.skipif(not (viewer_static_dir() / "node_modules" / REQUIRED_ASSETS[0]).is_file(),
                    reason="the viewer's npm packages are not installed (run ./setup.sh)")
def test_view_command_serves_until_stopped(tmp_path):
    run = write_test_run(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "splatforge", "view", str(run), "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not "".join(lines).rstrip().endswith("}"):
            line = proc.stdout.readline()
            assert line, f"view exited early: {proc.stderr.read() if proc.poll() is not None else ''}"
            lines.append(line)
        info = json.loads("".join(lines))
        assert info["splat"] == str((run / "export" / "scene.ply").resolve()) and info["format"] == "ply"
        assert info["transforms"] == str((run / "transforms.json").resolve())
        host_port = info["url"].split("/")[2]
        conn = http.client.HTTPConnection(host_port, timeout=10)
        conn.request("GET", "/node_modules/@sparkjsdev/spark/dist/spark.module.js")
        response = conn.getresponse()
        assert response.status == 200 and b"SplatMesh" in response.read()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_view_command_error_for_a_folder_without_a_splat(tmp_path):
    result = subprocess.run([sys.executable, "-m", "splatforge", "view", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    err = json.loads(result.stdout)
    assert err["ok"] is False and "export" in err["advice"]


# --- the page in a real browser ---------------------------------------------------------------------


def _browser_skip_reason() -> str | None:
    if not CHROMIUM.is_file():
        return f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium, or ./setup.sh)"
    if not (viewer_static_dir() / "node_modules" / REQUIRED_ASSETS[-1]).is_file():
        return "the viewer's npm packages are not installed (run ./setup.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    return None


def _screen(page, path: Path) -> np.ndarray:
    """Screenshot of the canvas alone (overlays hidden), as an (H, W, 3) uint8 array."""
    from PIL import Image

    page.add_style_tag(content="#panel, #help { display: none !important; }")
    page.screenshot(path=str(path))
    page.add_style_tag(content="#panel, #help { display: block !important; }")
    return np.asarray(Image.open(path).convert("RGB"))


def _not_background(img: np.ndarray, background: list[int]) -> np.ndarray:
    return np.abs(img.astype(int) - np.array(background)).max(axis=2) > 12


@pytest.mark.browser
@pytest.mark.skipif(_browser_skip_reason() is not None, reason=str(_browser_skip_reason()))
def test_page_renders_the_splat_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    run = write_test_run(tmp_path / "run")
    server = make_server(resolve_input(run), ServerOptions(port=0))
    serve_in_thread(server)
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 640, "height": 480})
            page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(server_url(server))
            webgl = page.evaluate("() => document.createElement('canvas').getContext('webgl2')"
                                  "?.getParameter(0x1F02 /* VERSION */) ?? null")
            assert webgl and "WebGL 2.0" in webgl, f"no WebGL2 under software GL: {webgl}"
            page.wait_for_function("() => window.__splatforge?.error || window.__splatforge?.frames >= 10",
                                   timeout=120_000)
            state = page.evaluate("() => window.__splatforge")
            assert state["error"] is None, state["error"]
            assert state["loaded"] and state["numSplats"] == 4500 and state["cameras"] == 12
            assert page.text_content("#camera-name").startswith("camera 1/12")

            # Spark sorts in a worker: allow it a few more frames before the splat shows.
            deadline = time.monotonic() + 30
            while True:
                first = _screen(page, tmp_path / "first_camera.png")
                covered = _not_background(first, state["background"]).mean()
                if covered > 0.05 or time.monotonic() > deadline:
                    break
                page.wait_for_timeout(500)
            assert covered > 0.05, f"only {covered:.1%} of the canvas differs from the background"
            # Seen from the first training camera, the ball's red half (world -y = capture up) is on top.
            red = (first[..., 0] > 150) & (first[..., 1] < 100) & (first[..., 2] < 100)
            blue = (first[..., 2] > 150) & (first[..., 0] < 100) & (first[..., 1] < 130)
            assert red.sum() > 500 and blue.sum() > 500, (red.sum(), blue.sum())
            assert np.nonzero(red)[0].mean() < np.nonzero(blue)[0].mean(), "the splat is upside down"

            # Orbit with the mouse: the view changes and still shows the splat.
            page.mouse.move(320, 240)
            page.mouse.down()
            page.mouse.move(420, 260, steps=8)
            page.mouse.up()
            frames = page.evaluate("() => window.__splatforge.frames")
            page.wait_for_function(f"() => window.__splatforge.frames >= {frames + 8}", timeout=60_000)
            orbited = _screen(page, tmp_path / "orbited.png")
            assert _not_background(orbited, state["background"]).mean() > 0.05
            changed = np.abs(orbited.astype(int) - first.astype(int)).max(axis=2) > 30
            assert changed.mean() > 0.02, "dragging did not move the view"

            # Arrow keys step along the training cameras.
            page.keyboard.press("ArrowRight")
            assert page.text_content("#camera-name").startswith("camera 2/12")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not errors, errors


# --- every export format in the browser -------------------------------------------------------------




@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.browser
@pytest.mark.skipif(_format_skip_reason() is not None, reason=str(_format_skip_reason()))
@pytest.mark.parametrize("format_name", ["ply-compressed", "splat", "spz", "sog"])
def test_each_export_format_renders_in_chromium(chromium, tmp_path, format_name):
    """`splatforge view RUN --format F` for each compact format: Spark decodes it with no console error,
    every Gaussian arrives, and the ball shows right way up in its colours."""
    from splatforge.splat.formats import FORMATS, read_splat, write_splat

    run = write_test_run(tmp_path / "run")
    fmt = FORMATS[format_name]
    write_splat(read_splat(run / "export" / "scene.ply"), run / "export" / f"scene{fmt.suffix}")
    view = resolve_input(run, format_name)
    assert view.splat.name == f"scene{fmt.suffix}" and view.format is fmt
    server = make_server(view, ServerOptions(port=0))
    serve_in_thread(server)
    errors: list[str] = []
    page = chromium.new_page(viewport={"width": 640, "height": 480})
    try:
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        url = server_url(server)
        assert f"ply=scene{fmt.suffix}&" in url
        page.goto(url)
        page.wait_for_function("() => window.__splatforge?.error || window.__splatforge?.frames >= 10",
                               timeout=120_000)
        state = page.evaluate("() => window.__splatforge")
        assert state["error"] is None, state["error"]
        assert state["loaded"] and state["numSplats"] == 4500 and state["cameras"] == 12
        deadline = time.monotonic() + 30
        while True:
            shot = _screen(page, tmp_path / f"{format_name}.png")
            covered = _not_background(shot, state["background"]).mean()
            if covered > 0.05 or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        assert covered > 0.05, f"only {covered:.1%} of the canvas differs from the background"
        red = (shot[..., 0] > 150) & (shot[..., 1] < 100) & (shot[..., 2] < 100)
        blue = (shot[..., 2] > 150) & (shot[..., 0] < 100) & (shot[..., 1] < 130)
        assert red.sum() > 500 and blue.sum() > 500, (red.sum(), blue.sum())
        assert np.nonzero(red)[0].mean() < np.nonzero(blue)[0].mean(), "the splat is upside down"
    finally:
        page.close()
        server.shutdown()
        server.server_close()
    assert not errors, errors
