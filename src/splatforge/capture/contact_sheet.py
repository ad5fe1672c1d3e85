"""Contact sheet of a checked capture: every image as a thumbnail, flagged ones marked.

Writes `contact_sheet.png` (a grid; red frame = flagged image, orange = not in the largest matched
group, green = fine) and `index.html` (verdict, advice, the sheet and a table of every measure).
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from splatforge.rundir import atomic_path, atomic_write_text

CELL = 200  # px per thumbnail cell (square)
LABEL = 34  # px of text under each thumbnail
COLUMNS = 8
RED, ORANGE, GREEN, GREY = (40, 40, 220), (0, 150, 255), (80, 170, 60), (90, 90, 90)  # BGR


def _cell(thumb: np.ndarray | None, title: str, note: str, colour: tuple[int, int, int]) -> np.ndarray:
    cell = np.full((CELL + LABEL, CELL, 3), 255, np.uint8)
    if thumb is not None:
        h, w = thumb.shape[:2]
        s = min((CELL - 8) / w, (CELL - 8) / h)
        small = cv2.resize(thumb, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        y, x = (CELL - small.shape[0]) // 2, (CELL - small.shape[1]) // 2
        cell[y : y + small.shape[0], x : x + small.shape[1]] = small
    cv2.rectangle(cell, (1, 1), (CELL - 2, CELL - 2), colour, 4)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(cell, title[:30], (4, CELL + 13), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(cell, note[:32], (4, CELL + 29), font, 0.4, colour, 1, cv2.LINE_AA)
    return cell


def render_sheet(report) -> np.ndarray:
    """(H, W, 3) BGR grid of the report's thumbnails (grey boxes when none were kept)."""
    thumbs = report.thumbnails or [None] * len(report.images)
    cells = []
    for m, thumb in zip(report.images, thumbs):
        if m.flags:
            colour, note = RED, ", ".join(m.flags)
        elif m.component > 1:
            colour, note = ORANGE, f"group {m.component}: apart from group 1"
        else:
            colour, note = GREEN, f"sharp {m.sharpness:.0f}, {m.features} feat"
        cells.append(_cell(thumb, f"{m.index}  {m.name}", note, colour))
    if not cells:
        cells = [_cell(None, "no images", "", GREY)]
    cols = min(COLUMNS, len(cells))
    while len(cells) % cols:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.hstack(cells[r : r + cols]) for r in range(0, len(cells), cols)]
    return np.vstack(rows)


def write_contact_sheet(report, out_dir: Path) -> Path:
    """Write `out_dir/contact_sheet.png` and `out_dir/index.html`; returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "contact_sheet.png"
    with atomic_path(png) as tmp:
        if not cv2.imwrite(str(tmp), render_sheet(report)):
            raise OSError(f"could not write {png}")
    colour = {"good": "#2e7d32", "risky": "#ef6c00", "will-fail": "#c62828"}.get(report.verdict, "#333")
    keys = [
        "index",
        "name",
        "width",
        "height",
        "sharpness",
        "bright_fraction",
        "dark_fraction",
        "brightness",
        "features",
        "next_inliers",
        "degree",
        "component",
        "flags",
    ]
    rows = []
    for m in report.images:
        d = {k: getattr(m, k) for k in keys}
        d["flags"] = ", ".join(m.flags)
        style = ' class="flag"' if m.flags else (' class="apart"' if m.component > 1 else "")
        rows.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(d[k]))}</td>" for k in keys) + "</tr>")
    advice = "".join(f"<li>{html.escape(a)}</li>" for a in report.advice)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>splatforge capture check</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.verdict {{ font-size: 1.6em; color: {colour}; font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #ccc; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-top: 1em; }}
td, th {{ border: 1px solid #ddd; padding: 2px 6px; text-align: right; }}
tr.flag {{ background: #fdecea; }} tr.apart {{ background: #fff3e0; }}
</style></head><body>
<h1>Capture check</h1>
<p class="verdict">{html.escape(report.verdict)} &mdash; score {report.score}/100</p>
<p>{len(report.images)} images from {html.escape(str(report.summary.get("input", "")))}.
Red frame: flagged image; orange: shares no features with the main group.</p>
<h2>What to do</h2><ul>{advice}</ul>
<img src="contact_sheet.png" alt="contact sheet">
<table><tr>{"".join(f"<th>{k}</th>" for k in keys)}</tr>
{"".join(rows)}
</table></body></html>
"""
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    return index
