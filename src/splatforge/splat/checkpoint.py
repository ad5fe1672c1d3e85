"""Checkpoints: `checkpoints/ckpt_XXXXXXX.pt`, written atomically, the newest few kept.

One checkpoint holds everything needed to continue bit-for-bit on the CPU: parameters, optimizer
states, the strategy's running state, the RNG states (global torch, CUDA, the sampler's generator)
and the step. Parameters are saved as CPU tensors so a checkpoint loads on any device.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from splatforge.rundir import atomic_path

_NAME = re.compile(r"^ckpt_(\d{7,})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"ckpt_{step:07d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) sorted by step, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def newest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def save_checkpoint(folder: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write atomically, then delete all but the newest `keep` checkpoints."""
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    if keep > 0:
        for _step, old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def clear_checkpoints(folder: Path) -> None:
    for _step, path in list_checkpoints(folder):
        path.unlink(missing_ok=True)
