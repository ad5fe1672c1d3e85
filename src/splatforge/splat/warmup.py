"""Slow imports started early, in a thread, so they are done by the time training needs them.

torch.optim's first optimizer imports torch._dynamo: 3.2 s on the 2-core machine, and on the GPU host the
block that creates the optimizers took 5.3 s of fox's train stage (`train.json` phases, 2026-11-27).
gsplat's compiled CUDA module loads on the first rasterisation. `run_pipeline` starts this before the
stages (it overlaps frames, check and poses); `train` starts it too (it overlaps decoding the images).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()
_thread: threading.Thread | None = None


def preload_training_imports() -> None:
    """Start importing what training will import (once per process; returns at once)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_preload, name="splatforge-preload", daemon=True)
            _thread.start()


def _preload() -> None:
    try:
        import torch
        import torch._dynamo  # noqa: F401

        if torch.cuda.is_available():
            from gsplat.cuda._backend import _C  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a failed preload only means the import happens later, where it errors
        log.debug("preloading the training imports: %s", exc)
