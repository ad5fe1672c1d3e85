"""One console for the whole program: rich for people (on stderr), plain JSON for machines (on stdout).

Commands that report something accept `--json`; they then print exactly one JSON document on stdout
with `emit_json` and keep every human message on stderr, so `splatforge X --json | jq` always works.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True, highlight=False)
log = logging.getLogger("splatforge")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger("splatforge")
    root.handlers.clear()
    root.addHandler(RichHandler(console=console, show_path=False, show_time=False, markup=False))
    root.setLevel(level)
    root.propagate = False


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and dataclass-like objects into JSON-friendly values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    return json.dumps(to_jsonable(value), indent=indent)


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout (the only thing a `--json` command writes there)."""
    print(dumps(value), flush=True)
