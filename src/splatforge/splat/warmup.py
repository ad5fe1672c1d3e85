"""Slow imports started early, in a thread, so they are done by the time training needs them.

gsplat's compiled CUDA module loads on the first rasterisation. `run_pipeline` starts this before the stages
(it overlaps frames, check and poses); `train` starts it too (it overlaps decoding the images). torch.optim's
import of torch._dynamo (5.3 s of fox's train stage on the GPU host, 2026-11-27) was preloaded here too until
the trainer stopped using torch.optim (splat/adam.py).
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

        if torch.cuda.is_available():
            from gsplat.cuda._backend import _C  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a failed preload only means the import happens later, where it errors
        log.debug("preloading the training imports: %s", exc)
