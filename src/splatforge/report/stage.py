"""The report stage: report.json and a self-contained report.html from the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splatforge.rundir import RunDir
from splatforge.stage import Events, Stage


@dataclass
class ReportOptions:
    """Nothing to choose yet: the report reads everything from the run folder."""


def _run_report(run: RunDir, options: ReportOptions, events: Events) -> dict[str, Any]:
    from splatforge.report import build_report

    build_report(run)
    return {"html": run.report_html.name}


REPORT = Stage(
    name="report", options=ReportOptions, run=_run_report, done=lambda run: run.report_json.exists(),
    reads=("run.json", "quality.json", "poses.json", "train.json", "metrics.jsonl", "renders/", "export/"),
    writes=("report.json", "report.html"), weight=0.08, help="report.json and report.html: what was made and how good it is")
