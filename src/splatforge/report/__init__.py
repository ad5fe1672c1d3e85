"""The run report: report.json (numbers) and report.html (one self-contained page) from a run folder."""

from splatforge.report.build import ReportOptions, build_report, collect
from splatforge.report.summary import summary_lines

__all__ = ["ReportOptions", "build_report", "collect", "summary_lines"]
