"""Error texts for API clients: no server paths, no command-line wording.

The pipeline's errors are written for the `splatforge` command line ("re-run with --force", a path on
this machine). The service shows them with the job's own vocabulary: paths relative to the job (or the
artifact URL when the file is one), job options instead of flags, "submit the capture again" instead
of "re-run".
"""

from __future__ import annotations

import re
from pathlib import Path

# Command-line flag -> what an API client sets instead (None: the service does not take it).
FLAG_TO_OPTION: dict[str, str | None] = {
    "force": "force=true", "steps": "steps", "preset": "preset", "downscale": "downscale",
    "frame-count": "frame_count", "count": "frame_count",
}
_RERUN = re.compile(r"\b(?:re-?run|run (?:it )?again|try again)\b(?=[^.]*--)", re.IGNORECASE)
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
# An absolute filesystem path: "/" then at least one more component; not a URL path of this API.
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?!v1/)(?:[\w.@+-]+/)+[\w.@+-]*")


def _flag(match: re.Match) -> str:
    option = FLAG_TO_OPTION.get(match.group(1))
    if option is None:
        return f"`{match.group(1).replace('-', '_')}` (a setting of the command line, not of the service)"
    return f"the job option {option}"


def api_wording(text: str | None, job_dir: Path | None = None, workspace: Path | None = None,
                artifacts: dict[str, str] | None = None) -> str | None:
    """`text` for an API client: the job's files named relative to the job folder (or by artifact URL:
    `artifacts` maps a path relative to the job's run folder to its URL), other server paths reduced
    to their file name, command-line flags and "re-run" turned into job options and resubmission."""
    if not text:
        return text
    if job_dir is not None:
        job_dir = Path(job_dir)
        for rel, url in (artifacts or {}).items():
            text = text.replace(str(job_dir / "run" / rel), url)
        text = text.replace(f"{job_dir}/", "").replace(str(job_dir), "the job folder")
    if workspace is not None:
        text = text.replace(f"{Path(workspace)}/", "").replace(str(workspace), "the workspace")
    text = _ABS_PATH.sub(lambda m: Path(m.group(0)).name or "a server folder", text)
    text = _RERUN.sub("submit the capture again", text)
    return _FLAG.sub(_flag, text)
