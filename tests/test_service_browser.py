"""The service's web UI in Debian's Chromium (Playwright, headless): set the token, drop a small
synthetic capture on the page, watch the job finish in the list and on its page, and see the splat
render in the embedded Spark viewer. Jobs run `service_runner.fake_pipeline` here (it writes a real
3DGS PLY); test_service_pipeline.py runs the same flow with the real pipeline (slow).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from service_support import RUNNER, ThreadServer, ensure_ray, fresh_db_url
from splatforge.service.app import create_app
from splatforge.service.settings import ServiceSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader"]
TOKEN = "browser-token-0123456789"


def browser_skip_reason() -> str | None:
    if not CHROMIUM.is_file():
        return f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium, or ./setup.sh)"
    try:
        import playwright.sync_api  # noqa: F401

        from splatforge.viewer.server import REQUIRED_ASSETS, viewer_static_dir
    except ImportError as exc:
        return f"missing for the browser test: {exc}"
    if not (viewer_static_dir() / "node_modules" / REQUIRED_ASSETS[-1]).is_file():
        return "the viewer's npm packages are not installed (run ./setup.sh)"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.timeout(300),
              pytest.mark.skipif(browser_skip_reason() is not None, reason=str(browser_skip_reason()))]


def synthetic_capture(folder: Path, n_views: int = 16, width: int = 64, height: int = 48) -> list[Path]:
    from splatforge.synthetic import SyntheticOptions, make_synthetic_capture

    make_synthetic_capture(folder, SyntheticOptions(n_views=n_views, width=width, height=height))
    return sorted((folder / "images").glob("*.png"))


def drop_files(page, selector: str, files: list[Path]) -> None:
    """Drag and drop real files onto `selector`, as a user dragging them from a file manager."""
    payload = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in files]
    page.evaluate("""([selector, files]) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, {type: "image/png"}));
        }
        const target = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
    }""", [selector, payload])


def run_ui_flow(server_url: str, capture: list[Path], shots: Path, steps: int, timeout_s: float,
                force: bool = False, preset: str = "demo") -> dict:
    """Drive the UI from token to rendered splat; returns what the embedded viewer reported."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.goto(server_url)
        page.wait_for_selector("#token-box:not([hidden])")
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("#token-box", state="hidden")

        drop_files(page, "#drop", capture)
        assert page.text_content("#picked").startswith(f"{len(capture)} file(s)")
        page.select_option("#preset", preset)
        page.fill("#steps", str(steps))
        if force:
            page.check("#force")
        page.click("#start")
        page.wait_for_url(re.compile(r"#/jobs/[A-Za-z0-9_-]{20,}$"), timeout=60_000)
        job_id = page.url.rsplit("/", 1)[-1]
        page.wait_for_function("() => ['succeeded', 'failed'].includes(document.querySelector('#job-state').textContent)",
                               timeout=timeout_s * 1000)
        assert page.text_content("#job-state") == "succeeded", page.text_content("#job-error")
        assert page.text_content("#job-line").startswith("100.0%")

        page.wait_for_selector("#viewer-section:not([hidden])")
        viewer = page.frame_locator("#viewer")
        frame = next(f for f in page.frames if "/viewer/index.html" in f.url)
        frame.wait_for_function("() => window.__splatforge?.error || window.__splatforge?.frames >= 10",
                                timeout=120_000)
        state = frame.evaluate("() => window.__splatforge")
        assert state["error"] is None, state["error"]
        assert viewer.locator("#status").text_content().endswith("splats") or state["numSplats"] > 0
        page.wait_for_timeout(1500)  # Spark sorts in a worker: a few more frames before the splat shows
        page.locator("#viewer").screenshot(path=str(shots / "viewer.png"))
        page.screenshot(path=str(shots / "job-page.png"), full_page=True)

        page.goto(server_url + "/#/")
        # the list shows the rows of its last refresh (the job queued) until its own refresh comes back
        row = page.locator(f"tr[data-job='{job_id}']")
        row.wait_for(timeout=10_000)
        page.locator(f"tr[data-job='{job_id}']", has_text="succeeded").wait_for(timeout=10_000)
        assert "succeeded" in row.text_content()
        browser.close()
    assert not errors, errors
    return {"job_id": job_id, **state}


def splat_coverage(path: Path, background: list[int]) -> float:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float((np.abs(img - np.array(background)).max(axis=2) > 12).mean())


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    ensure_ray()
    workspace = tmp_path_factory.mktemp("service-ui")
    settings = ServiceSettings(token=TOKEN, workspace=workspace, db_url=fresh_db_url(workspace), runner=RUNNER,
                               progress_interval_s=0.1, events_poll_s=0.1)
    with ThreadServer(create_app(settings)) as server:
        yield server


def test_drop_capture_watch_it_finish_and_see_the_splat(ui_server, tmp_path):
    capture = synthetic_capture(tmp_path / "capture")
    state = run_ui_flow(ui_server.url, capture, tmp_path, steps=30, timeout_s=120)
    assert state["loaded"] and state["numSplats"] == 400  # the runner's PLY
    coverage = splat_coverage(tmp_path / "viewer.png", state["background"])
    assert coverage > 0.01, f"only {coverage:.1%} of the viewer differs from its background"


def test_failed_job_page_shows_error_and_advice(ui_server, tmp_path):
    from playwright.sync_api import sync_playwright

    capture = synthetic_capture(tmp_path / "capture", n_views=2)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(ui_server.url)
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        drop_files(page, "#drop", capture)
        page.click("#start")
        page.wait_for_url(re.compile(r"#/jobs/"), timeout=60_000)
        page.wait_for_selector("#job-error:not([hidden])", timeout=60_000)
        assert "too few" in page.text_content("#job-error .error-message")
        assert "overlapping photos" in page.text_content("#job-error .advice")
        assert not page.is_disabled("#retry") and page.is_disabled("#cancel")
        browser.close()


def test_cookie_login_works_for_tokens_with_url_characters(tmp_path):
    """The page stores the token in a cookie URL-encoded (for the viewer's <iframe>); the server decodes it."""
    from playwright.sync_api import sync_playwright

    token = "a/b+c=d-0123456789"
    ensure_ray()
    settings = ServiceSettings(token=token, workspace=tmp_path, db_url=fresh_db_url(tmp_path), runner=RUNNER)
    with ThreadServer(create_app(settings)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(server.url)
        page.fill("#token-input", token)
        page.click("#token-form button[type=submit]")
        page.wait_for_selector("#token-box", state="hidden")
        cookie = next(c for c in page.context.cookies() if c["name"] == "splatforge_token")
        assert cookie["value"] != token and "%2F" in cookie["value"]  # what the page really sends
        status = page.evaluate("() => fetch('/v1/jobs', {credentials: 'same-origin'}).then(r => r.status)")
        assert status == 200
        browser.close()
