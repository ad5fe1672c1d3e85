"""report.html: one self-contained file (inline CSS, images as data: URIs, no scripts, no external URLs).

It works offline, survives being mailed or copied out of the run folder, and reads on a phone (one
column below ~700 px, images scale to the screen).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from splatforge.report import fmt, plots
from splatforge.rundir import RunDir

log = logging.getLogger(__name__)

_CSS = """
:root{--fg:#111827;--muted:#6b7280;--bg:#f3f4f6;--card:#fff;--line:#e5e7eb;--good:#16a34a;--fair:#d97706;
--poor:#dc2626;--info:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.35rem;margin:0 0 4px}h2{font-size:1.1rem;margin:0 0 10px}
section,header{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px;margin:0 0 14px}
.sub{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;color:#fff;font-weight:600;font-size:.85rem;
text-transform:uppercase;letter-spacing:.03em;vertical-align:middle}
.good,.done,.ok{background:var(--good)}.fair,.risky,.running,.partial,.incomplete{background:var(--fair)}
.poor,.failed,.will-fail,.interrupted,.unreadable{background:var(--poor)}.missing,.none{background:var(--muted)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-top:12px}
.tile{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.tile .k{color:var(--muted);font-size:.75rem;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:1.15rem;font-weight:650}
.reason{margin-top:8px;color:var(--muted)}
ul.next{margin:0;padding-left:20px}ul.next li{margin:4px 0}
code{background:#eef2ff;padding:1px 5px;border-radius:4px;font-size:.9em;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:500}table.kv th{width:38%}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px;align-items:start}
img{max-width:100%;height:auto;display:block;border-radius:6px}
figure{margin:0 0 14px}figcaption{color:var(--muted);font-size:.85rem;margin-top:4px;overflow-wrap:anywhere}
figure.render img{max-height:85vh;width:auto;margin:0 auto}figure.render figcaption{text-align:center}
.note{color:var(--muted);font-style:italic}
.error{border-left:4px solid var(--poor);background:#fef2f2;padding:8px 12px;border-radius:6px;margin:8px 0}
.advice{border-left:4px solid var(--fair);background:#fffbeb;padding:8px 12px;border-radius:6px;margin:8px 0}
.scroll{overflow-x:auto}.nowrap{white-space:nowrap}
@media (max-width:700px){main{padding:8px}.tile .v{font-size:1.1rem}table.kv th{width:45%}}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes | None, alt: str, mime: str = "image/png") -> str:
    if not data:
        return ""
    return f'<img src="{_data_uri(data, mime)}" alt="{escape(alt)}">'


def _render_jpeg(path: Path, max_width: int, quality: int) -> bytes:
    from PIL import Image

    from splatforge.capture.imageio import read_image

    im = Image.fromarray(read_image(path))
    if im.width > max_width:
        im = im.resize((max_width, max(1, round(im.height * max_width / im.width))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _badge(label: str | None) -> str:
    label = label or "none"
    return f'<span class="badge {escape(label)}">{escape(label)}</span>'


def _rows(pairs: list[tuple[str, str]]) -> str:
    """Table rows from (label, already-escaped HTML value) pairs."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<div class="scroll"><table class="kv">{body}</table></div>'


def _value(value: Any) -> str:
    if isinstance(value, float):
        return escape(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}")
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        return escape(", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items()))
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return escape(", ".join(str(v) for v in value[:30]) + (" ..." if len(value) > 30 else ""))
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return escape(text if len(text) < 300 else text[:297] + "...")
    return escape("–" if value is None else str(value))


def _error_box(error: dict | None) -> str:
    if not error:
        return ""
    parts = [f'<div class="error"><b>{escape(error.get("type") or "error")}:</b> '
             f'{escape(error.get("message") or "no message recorded")}</div>']
    if error.get("advice"):
        parts.append(f'<div class="advice"><b>What to do:</b> {escape(error["advice"])}</div>')
    return "".join(parts)


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _not_ok(section: dict) -> str:
    """The body of a section without data: its note, and the stage's error and advice if it failed."""
    return (f'<p>{_badge(section.get("status"))} <span class="note">{escape(section.get("note") or "")}</span></p>'
            + _error_box(section.get("error")))


def _short_time(iso: str | None) -> str:
    """'2026-11-22T21:30:28+00:00' -> '11-22 21:30:28' (the table has little room; report.json keeps it all)."""
    if not iso or len(iso) < 19 or iso[10] != "T":
        return iso or ""
    return f"{iso[5:10]} {iso[11:19]}"


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


# --------------------------------------------------------------------------------------------------


def _headline(report: dict) -> str:
    h = report["headline"]
    reg = f"{h['registered']} / {h['total_images']}" if h.get("registered") is not None else "–"
    capture = "–"
    if h.get("capture_verdict"):
        score = f" ({h['capture_score']:.0f})" if h.get("capture_score") is not None else ""
        capture = f"{h['capture_verdict']}{score}"
    tiles = [
        ("Capture", capture),
        ("Registered images", reg),
        ("Hold-out PSNR" if h.get("held_out", True) else "PSNR (train views)", fmt.number(h.get("psnr"), 2, "dB")),
        ("SSIM / LPIPS", f"{fmt.number(h.get('ssim'), 3)} / {fmt.number(h.get('lpips'), 3)}"),
        ("Gaussians", fmt.count(h.get("num_gaussians"))),
        ("Total time", fmt.duration(h.get("total_seconds"))),
    ]
    tile_html = "".join(f'<div class="tile"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>'
                        for k, v in tiles)
    name = Path(report["run"]).name
    return (f'<header><h1>splatforge report: {escape(name)} {_badge(h["verdict"])}</h1>'
            f'<div class="sub">{escape(report["run"])} · generated {escape(report["generated"])}</div>'
            f'<div class="tiles">{tile_html}</div>'
            f'<div class="reason">Result: {escape(h["verdict"])} ({escape(h["reason"])}).</div></header>')


def _next_steps(report: dict) -> str:
    items = []
    for step in report["next_steps"]:
        if step.startswith("Look at the result: "):
            cmd = step.split(": ", 1)[1]
            items.append(f"<li>Look at the result: <code>{escape(cmd)}</code></li>")
        else:
            items.append(f"<li>{escape(step)}</li>")
    if not items:
        items.append("<li>Nothing to do: every stage that ran succeeded.</li>")
    return _section("What to look at, what to do next", f'<ul class="next">{"".join(items)}</ul>', "next")


def _capture(report: dict, images: list[dict] | None) -> str:
    c = report["capture"]
    if c["status"] != "ok":
        return _section("Capture quality", _not_ok(c), "capture")
    score = f"{c['score']:.0f} / 100" if c.get("score") is not None else "–"
    pairs = [("Verdict", _badge(c.get("verdict"))), ("Score", escape(score)),
             ("Images checked", escape(str(c.get("num_images"))))]
    pairs += [(str(k).replace("_", " "), _value(v)) for k, v in (c.get("summary") or {}).items()]
    if c.get("flagged"):
        listed = ", ".join(f"{f['name']} ({', '.join(f['flags'])})" for f in c["flagged"][:20])
        more = f" and {len(c['flagged']) - 20} more" if len(c["flagged"]) > 20 else ""
        pairs.append(("Flagged images", escape(listed + more)))
    if c.get("contact_sheet"):
        pairs.append(("Contact sheet", f'<a href="{escape(c["contact_sheet"])}">{escape(c["contact_sheet"])}</a> '
                                       '(beside this report in the run folder)'))
    advice = "".join(f'<div class="advice">{escape(a)}</div>' for a in c.get("advice") or [])
    chart = _img(plots.capture_measures(images), "per-image measures") if images else ""
    return _section("Capture quality", f'<div class="grid"><div>{_rows(pairs)}{advice}</div><div>{chart}</div></div>',
                    "capture")


def _poses(report: dict, plot: dict | None, opts) -> str:
    p = report["poses"]
    if p["status"] != "ok":
        return _section("Camera poses", _not_ok(p), "poses")
    reg = "–"
    if p.get("registered") is not None:
        frac = f" ({100 * p['registered_fraction']:.0f} %)" if p.get("registered_fraction") is not None else ""
        reg = f"{p['registered']} of {p['total']}{frac}"
    pairs = [("Engine", _value(p.get("engine"))), ("Registered images", escape(reg)),
             ("Mean reprojection error", escape(fmt.number(p.get("mean_reprojection_error"), 3, "px"))),
             ("Sparse points", escape(fmt.count(p.get("points"))))]
    for key, label in (("matching", "Matching"), ("mapper", "Mapper")):
        if p.get(key):
            pairs.append((label, _value(p[key])))
    for step, secs in (p.get("seconds") or {}).items():
        pairs.append((f"time: {step}", escape(fmt.duration(secs if isinstance(secs, (int, float)) else None))))
    if p.get("unregistered"):
        reasons = p.get("unregistered_reasons") or {}
        names = [f"{n} ({reasons[n]})" if reasons.get(n) else n for n in p["unregistered"][:30]]
        pairs.append(("Not registered", escape(", ".join(names) + (" ..." if len(p["unregistered"]) > 30 else ""))))
    note = f'<p class="note">{escape(p["note"])}</p>' if p.get("note") else ""
    note += "".join(f'<div class="advice">{escape(n)}</div>' for n in p.get("notes") or [])
    figure = ""
    if plot is not None:
        png = plots.camera_topdown(plot, max_points=opts.max_plot_points)
        figure = (f"<figure>{_img(png, 'camera positions seen from above')}<figcaption>Camera positions "
                  f"from {escape(p.get('camera_source') or '?')}, seen from above (the cameras' mean up "
                  "direction); arrows show where each camera looks.</figcaption></figure>")
    return _section("Camera poses", f'{note}<div class="grid"><div>{_rows(pairs)}</div><div>{figure}</div></div>',
                    "poses")


def _training(report: dict, curves: dict | None) -> str:
    t = report["training"]
    if t["status"] not in ("ok", "partial"):
        return _section("Training", _not_ok(t), "training")
    head = _not_ok(t) if t["status"] == "partial" else ""
    ev = t.get("eval") or {}
    on = "Hold-out" if t.get("eval_on") in (None, "held-out") else "Training-view"
    pairs = [(f"{on} PSNR", escape(fmt.number(ev.get("psnr"), 2, "dB"))),
             (f"{on} SSIM", escape(fmt.number(ev.get("ssim"), 4))),
             (f"{on} LPIPS", escape(fmt.number(ev.get("lpips"), 4) + (f" ({t['lpips_note']})"
                                                                      if t.get("lpips_note") else "")))]
    initial = t.get("initial_eval") or {}
    if initial.get("psnr") is not None:
        pairs.append(("PSNR before training", escape(fmt.number(_float_or_none(initial.get("psnr")), 2, "dB"))))
    if t.get("held_out") is not None or t.get("train_views") is not None:
        pairs.append(("Views", escape(f"{t.get('train_views', '?')} for training, {t.get('held_out', 0)} held out")))
    if t.get("resolution"):
        pairs.append(("Resolution", escape("x".join(str(v) for v in t["resolution"]))))
    pairs += [("Steps", _value(t.get("steps"))), ("Training time", escape(fmt.duration(t.get("seconds")))),
              ("Steps per second", escape(fmt.number(t.get("steps_per_s"), 2))),
              ("Gaussians", escape(fmt.count(t.get("num_gaussians")))),
              ("Final training loss", escape(fmt.number(t.get("final_loss"), 4))),
              ("Preset", _value(t.get("preset"))), ("Backend", _value(t.get("backend"))),
              ("Device", _value(t.get("device"))),
              ("Peak GPU memory", escape(fmt.number(t.get("peak_gpu_mem_gb"), 2, "GB")))]
    figs = ""
    if curves:
        pngs = plots.training_curves(curves["logs"], curves["evals"])
        captions = {"loss": "training loss", "psnr": "PSNR on training and held-out views",
                    "gaussians": "number of Gaussians", "eval": "hold-out SSIM and LPIPS"}
        figs = "".join(f"<figure>{_img(png, captions[k])}</figure>" for k, png in pngs.items())
    evals = t.get("eval_history") or []
    history = ""
    if len(evals) > 1:
        rows = "".join(f'<tr><td class="num">{e["step"]}</td><td class="num">{fmt.duration(e.get("elapsed_s"))}'
                       f'</td><td class="num">{fmt.number(e.get("psnr"), 2)}</td><td class="num">'
                       f'{fmt.number(e.get("ssim"), 4)}</td><td class="num">{fmt.number(e.get("lpips"), 4)}</td></tr>'
                       for e in evals)
        history = ('<h2>Hold-out evaluations</h2><div class="scroll"><table><tr><th class="num">step</th>'
                   '<th class="num">time</th><th class="num">PSNR (dB)</th><th class="num">SSIM</th>'
                   f'<th class="num">LPIPS</th></tr>{rows}</table></div>')
    body = (f'{head}<div class="grid"><div>{_rows(pairs)}</div></div>'
            f'<div class="grid" style="margin-top:12px">{figs}</div>{history}')
    return _section("Training and final metrics", body, "training")


def _renders(report: dict, run: RunDir, opts) -> str:
    r = report["renders"]
    if r["status"] != "ok":
        return _section("Held-out renders", _not_ok(r), "renders")
    views = r.get("views") or [{"file": f, "name": Path(f).stem, "psnr": None} for f in r["files"]]
    shown = views[:opts.max_renders]
    worst = r.get("worst")
    if worst and worst not in shown and shown:  # always show the weakest view
        shown = shown[:-1] + [worst]
    figures, used = [], 0
    for view in shown:
        rel = view["file"]
        score = f" · PSNR {view['psnr']:.2f} dB" if view.get("psnr") is not None else ""
        try:
            jpeg = _render_jpeg(run.root / rel, opts.render_max_width, opts.render_jpeg_quality)
        except Exception as exc:  # one unreadable image must not cost the report
            figures.append(f'<p class="note">{escape(rel)} could not be read: {escape(str(exc))}</p>')
            continue
        if used + len(jpeg) > opts.max_embedded_bytes:  # keep the page small enough to mail and open on a phone
            break
        used += len(jpeg)
        figures.append(f"<figure class=\"render\">{_img(jpeg, rel, 'image/jpeg')}<figcaption>"
                       f"{escape(view['name'])}: render (left) | photograph (right){escape(score)}"
                       "</figcaption></figure>")
    embedded = sum(1 for f in figures if f.startswith("<figure"))
    more = (f'<p class="note">{len(views) - embedded} more in {escape(str(run.renders))}</p>'
            if embedded < len(views) else "")
    intro = ('<p>Views held out of training, rendered from the splat next to the photograph. '
             'Differences here are what a viewer will see between the photos.</p>')
    return _section(f"Held-out renders ({r['count']})", intro + "".join(figures) + more, "renders")


def _export(report: dict) -> str:
    e = report["export"]
    if e["status"] != "ok":
        return _section("Export", _not_ok(e), "export")
    pairs = [("PLY", f"<code>{escape(e['path'])}</code>"), ("Size", escape(fmt.size(e.get("bytes")))),
             ("Gaussians", escape(fmt.count(e.get("num_gaussians"))))]
    return _section("Export", _rows(pairs), "export")


def _stages(report: dict) -> str:
    s = report["stages"]
    if not s["stages"]:
        note = s.get("note") or "run.json records no stage."
        return _section("Time per stage", f'<p class="note">{escape(note)}</p>', "stages")
    rows = []
    for r in s["stages"]:
        err = _error_box(r.get("error")) if r.get("error") else ""
        if r.get("previous_death"):
            death = r["previous_death"]
            err += _error_box({"type": "an earlier run stopped without a word", "message": death.get("message"),
                               "advice": death.get("advice")})
        rows.append(f'<tr><td>{escape(r["name"])}</td><td>{_badge(r.get("status"))}</td>'
                    f'<td class="num">{fmt.duration(r.get("seconds"))}</td>'
                    f'<td class="sub nowrap">{escape(_short_time(r.get("start")))}</td></tr>'
                    + (f'<tr><td colspan="4">{err}</td></tr>' if err else ""))
    rows.append(f'<tr><td><b>total</b></td><td></td><td class="num"><b>{fmt.duration(s.get("total_seconds"))}'
                '</b></td><td></td></tr>')
    table = ('<div class="scroll"><table><tr><th>stage</th><th>status</th><th class="num">time</th><th>started</th></tr>'
             f'{"".join(rows)}</table></div>')
    chart = _img(plots.stage_times(s["stages"]), "time per stage")
    return _section("Time per stage", f'<div class="grid"><div>{table}</div><div>{chart}</div></div>', "stages")


def _environment(report: dict) -> str:
    env = report["environment"]
    versions = env.get("versions") or {}
    gpu = versions.get("gpu") or env.get("device")
    pairs = [("GPU", _value(gpu or "none recorded")),
             ("Peak GPU memory", escape(fmt.number(env.get("peak_gpu_mem_gb"), 2, "GB")))]
    pairs += [(k, _value(v)) for k, v in versions.items() if k != "gpu"]
    return _section("GPU and versions", _rows(pairs), "environment")


def _files(report: dict) -> str:
    pairs = [(k.replace("_", " "), f"<code>{escape(v)}</code>") for k, v in report["files"].items() if v]
    return _section("Where everything is", _rows(pairs), "files")


def _guarded(title: str, fn, *args) -> str:
    """One part of the page; if drawing it fails (odd data, a plotting bug), say so instead of losing the report."""
    try:
        return fn(*args)
    except Exception as exc:
        log.warning("report: the %s section could not be drawn: %s", title, exc)
        return _section(title, f'<p class="note">This section could not be drawn: {escape(str(exc))}</p>',
                        title.lower().replace(" ", "-"))


def render_html(report: dict, plot_data: dict, run: RunDir, opts) -> str:
    """The whole report as one HTML string (see module docstring). Plots are drawn here."""
    body = "".join([
        _guarded("Summary", _headline, report),
        _guarded("Next steps", _next_steps, report),
        _guarded("Capture quality", _capture, report, plot_data.get("capture")),
        _guarded("Camera poses", _poses, report, plot_data.get("cameras"), opts),
        _guarded("Training", _training, report, plot_data.get("curves")),
        _guarded("Held-out renders", _renders, report, run, opts),
        _guarded("Export", _export, report),
        _guarded("Time per stage", _stages, report),
        _guarded("GPU and versions", _environment, report),
        _guarded("Files", _files, report),
    ])
    title = f"splatforge report: {Path(report['run']).name}"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")
