"""Which device trains, and how much memory the process, the machine and the GPU are using."""

from __future__ import annotations

import torch

from splatforge.console import log
from splatforge.errors import InputError


def resolve_device(choice: str = "auto") -> torch.device:
    """`auto`: the visible GPU with the most free memory, else the CPU; `cuda`, `cuda:N` or `cpu` as given.

    Indices are those torch sees (after CUDA_VISIBLE_DEVICES); the chosen GPU becomes the current one.
    """
    if choice in ("cpu", ""):
        return torch.device("cpu")
    if choice == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {choice!r} was asked for but no CUDA GPU is visible",
                         "run `splatforge doctor` to see why, or leave the device out to train on the CPU (slow)")
    count = torch.cuda.device_count()
    if choice in ("auto", "cuda"):
        free = []
        for i in range(count):
            try:
                free.append(torch.cuda.mem_get_info(i)[0])
            except RuntimeError:
                free.append(-1)
        index = max(range(count), key=lambda i: free[i])
    else:
        try:
            index = int(choice.removeprefix("cuda:"))
        except ValueError:
            raise InputError(f"unknown device {choice!r}", "use auto, cpu, cuda or cuda:N") from None
        if not 0 <= index < count:
            raise InputError(f"GPU {index} is out of range: {count} GPU(s) visible (0..{count - 1})",
                             "pick an index that `splatforge doctor` lists")
    torch.cuda.set_device(index)
    log.info("training on cuda:%d (%s)", index, torch.cuda.get_device_name(index))
    return torch.device(f"cuda:{index}")


def memory_snapshot(device: torch.device) -> dict[str, float | None]:
    """GiB: this process's resident memory, the machine's available memory, and (on CUDA) what torch has
    allocated and reserved. Recorded with every metrics line: the evidence when a run dies without a word."""
    import psutil

    gib = 1024**3
    machine = psutil.virtual_memory()
    out: dict[str, float | None] = {
        "host_rss_gb": round(psutil.Process().memory_info().rss / gib, 3),
        "host_available_gb": round(machine.available / gib, 3), "host_total_gb": round(machine.total / gib, 3),
        "gpu_mem_gb": None, "gpu_reserved_gb": None}
    if device.type == "cuda":
        out["gpu_mem_gb"] = round(torch.cuda.memory_allocated(device) / gib, 3)
        out["gpu_reserved_gb"] = round(torch.cuda.memory_reserved(device) / gib, 3)
    return out
