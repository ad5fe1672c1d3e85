"""`splatforge doctor`: is this machine ready for the requested use, and if not, what exactly fixes it.

Light at import (the CLI imports every command module): torch, cv2, pycolmap and av are only imported
in child processes by `splatforge.doctor.probe` when the checks run.
"""

from __future__ import annotations

from splatforge.doctor.cli import register
from splatforge.doctor.model import FAIL, OK, USES, WARN, Check, DoctorOptions


def run_checks(deep: bool = False, *args, **kwargs) -> list[Check]:
    """See `splatforge.doctor.checks.run_checks`."""
    from splatforge.doctor.checks import run_checks as _run

    return _run(deep, *args, **kwargs)


__all__ = ["FAIL", "OK", "USES", "WARN", "Check", "DoctorOptions", "register", "run_checks"]
