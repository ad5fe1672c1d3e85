"""The pipeline's final printout: where everything is, the hold-out scores, time per stage, how to look."""

from __future__ import annotations

from typing import Any

from splatforge.report import fmt


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Plain-text lines (no rich markup: paths may contain brackets) summarising a report dict."""
    head, files = report["headline"], report["files"]
    lines: list[str] = []
    scores = []
    if head.get("psnr") is not None:
        scores.append(f"PSNR {head['psnr']:.2f} dB")
    if head.get("ssim") is not None:
        scores.append(f"SSIM {head['ssim']:.3f}")
    if head.get("lpips") is not None:
        scores.append(f"LPIPS {head['lpips']:.3f}")
    lines.append(f"Result: {head['verdict']} ({head['reason']})")
    if scores:
        lines.append("Hold-out views: " + ", ".join(scores))
    if head.get("registered") is not None:
        lines.append(f"Registered images: {head['registered']} of {head['total_images']}")

    lines.append(f"Run folder:  {files['run']}")
    export = report.get("export") or {}
    if files.get("ply"):
        lines.append(f"Splat (PLY): {files['ply']} ({fmt.count(export.get('num_gaussians'))} Gaussians, "
                     f"{fmt.size(export.get('bytes'))})")
    if files.get("renders"):
        lines.append(f"Renders:     {files['renders']} ({report['renders'].get('count')} held-out views)")
    lines.append(f"Report:      {files['report_html']}")

    stages = [r for r in report["stages"]["stages"] if r["name"] != "report"]
    if stages:
        parts = []
        for r in stages:
            mark = "" if r["status"] == "done" else f" ({r['status']})"
            parts.append(f"{r['name']} {fmt.duration(r['seconds'])}{mark}")
        lines.append("Time per stage: " + ", ".join(parts)
                     + f"; total {fmt.duration(report['stages']['total_seconds'])}")
    for r in stages:
        if r["status"] in ("failed", "interrupted") and r.get("error"):
            lines.append(f"The {r['name']} stage {r['status']}: {r['error'].get('message')}")
            if r["error"].get("advice"):
                lines.append(f"  what to do: {r['error']['advice']}")
    if files.get("ply"):
        lines.append(f"Look at it:  splatforge view {files['run']}")
    else:
        lines.append(f"Open the report: {files['report_html']}")
    return lines
