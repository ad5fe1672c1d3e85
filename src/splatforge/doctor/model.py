"""What a check reports and what the user asked the environment to be good for."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"

# What each use needs. A check belongs to one need; a problem with it is a failure when the requested
# uses need it and a warning otherwise.
#   core:  Python, NumPy, torch, COLMAP bindings, disk space (every use)
#   video: decoding H.264/HEVC input videos
#   gpu:   CUDA training with gsplat (a GPU, the driver, the toolkit that builds gsplat's kernels)
#   viewer: the web viewer's npm assets
#   serve: the job service's database and Ray cluster
USES: dict[str, frozenset[str]] = {
    "cpu": frozenset({"core", "video"}),
    "train-gpu": frozenset({"core", "video", "gpu"}),
    "view": frozenset({"core", "viewer"}),
    "serve": frozenset({"core", "serve"}),
    "all": frozenset({"core", "video", "gpu", "viewer", "serve"}),
}


@dataclass
class Check:
    """One line of the report. `fix` is the command or setting that fixes a warn/fail ("" when ok)."""

    name: str
    status: str
    detail: str
    fix: str = ""
    need: str = "core"
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }
        out["need"] = self.need
        if self.data:
            out["data"] = self.data
        return out


@dataclass
class DoctorOptions:
    """Every knob of `run_checks`.

    uses: what the environment must be good for (keys of `USES`); decides warn vs fail.
    deep: also load (compiling if needed) gsplat's CUDA extension and render one tile.
    workspace: the folder whose free disk space matters (run folders go there).
    env: the environment to inspect and to give child processes (None: `os.environ`).
    probe_timeout_s: limit for the child processes that import torch, cv2, pycolmap, av.
    deep_timeout_s: limit for compiling and loading gsplat's extension with `deep`.
    service_timeout_s: limit for connecting to the job database and the Ray address.
    """

    uses: tuple[str, ...] = ("cpu",)
    deep: bool = False
    workspace: Path = field(default_factory=Path.cwd)
    env: dict[str, str] | None = None
    probe_timeout_s: float = 60.0
    deep_timeout_s: float = 1800.0
    service_timeout_s: float = 3.0

    def environ(self) -> dict[str, str]:
        return dict(os.environ if self.env is None else self.env)

    def needs(self) -> frozenset[str]:
        unknown = [u for u in self.uses if u not in USES]
        if unknown:
            raise ValueError(f"unknown use {unknown[0]!r}; choose from {', '.join(USES)}")
        out: frozenset[str] = frozenset()
        for use in self.uses:
            out |= USES[use]
        return out


def problem(need: str, needs: frozenset[str]) -> str:
    """The status of a problem with something of `need`: fail when the requested use needs it."""
    return FAIL if need in needs else WARN
