"""What the NVIDIA driver (NVML) sees, and how CUDA_VISIBLE_DEVICES maps CUDA indices onto it.

NVML numbers GPUs like nvidia-smi (PCI bus order) and ignores CUDA_VISIBLE_DEVICES; CUDA renumbers the
visible devices from 0, by default fastest first. UUIDs are the only stable link between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NvmlGpu:
    """One physical GPU as nvidia-smi shows it. Memory in bytes."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_total: int
    memory_used: int
    memory_free: int
    capability: tuple[int, int] | None
    processes: list[dict] = field(default_factory=list)


@dataclass
class NvmlInfo:
    ok: bool
    error: str = ""
    driver: str = ""
    cuda_driver: tuple[int, int] | None = None  # newest CUDA the driver supports, e.g. (12, 4)
    gpus: list[NvmlGpu] = field(default_factory=list)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:
        return "?"  # another container's or user's process


def read_nvml() -> NvmlInfo:
    try:
        import pynvml
    except ImportError as exc:
        return NvmlInfo(False, f"nvidia-ml-py is not installed ({exc})")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return NvmlInfo(False, f"{type(exc).__name__}: {exc}")
    try:
        info = NvmlInfo(True, driver=_text(pynvml.nvmlSystemGetDriverVersion()))
        try:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        except Exception:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
        info.cuda_driver = (v // 1000, (v % 1000) // 10)
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                cap = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            except Exception:
                cap = None
            procs: dict[int, dict] = {}
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    for p in getattr(pynvml, getter)(h):
                        used = getattr(p, "usedGpuMemory", None)
                        procs[p.pid] = {"pid": p.pid, "name": _process_name(p.pid), "memory": used}
                except Exception:
                    pass
            info.gpus.append(
                NvmlGpu(
                    index=i,
                    name=_text(pynvml.nvmlDeviceGetName(h)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                    pci_bus_id=_text(pynvml.nvmlDeviceGetPciInfo(h).busId),
                    memory_total=int(mem.total),
                    memory_used=int(mem.used),
                    memory_free=int(mem.free),
                    capability=cap,  # type: ignore[arg-type]
                    processes=list(procs.values()),
                )
            )
        return info
    except Exception as exc:
        return NvmlInfo(False, f"{type(exc).__name__}: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _norm_uuid(uuid: str) -> str:
    u = uuid.strip().lower()
    return u[4:] if u.startswith("gpu-") else u


@dataclass
class Mapping:
    """cuda:i -> physical GPU. `physical`: nvidia-smi index or None when unknown."""

    cuda_index: int
    physical: int | None
    uuid: str
    requested: str | None  # the CUDA_VISIBLE_DEVICES entry that produced it


def parse_visible(value: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES entries; None when unset. CUDA stops at the first invalid entry."""
    if value is None:
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


def map_devices(torch_uuids: list[str], gpus: list[NvmlGpu], visible: list[str] | None) -> list[Mapping]:
    by_uuid = {_norm_uuid(g.uuid): g.index for g in gpus}
    out = []
    for i, uuid in enumerate(torch_uuids):
        req = visible[i] if visible is not None and i < len(visible) else None
        out.append(Mapping(i, by_uuid.get(_norm_uuid(uuid)), uuid, req))
    return out


def resolve_entry(entry: str, gpus: list[NvmlGpu]) -> NvmlGpu | None:
    """The GPU a CUDA_VISIBLE_DEVICES entry names in nvidia-smi terms (index or UUID prefix)."""
    if entry.isdigit():
        n = int(entry)
        return gpus[n] if n < len(gpus) else None
    e = entry.lower()
    matches = [
        g for g in gpus if g.uuid.lower().startswith(e) or _norm_uuid(g.uuid).startswith(_norm_uuid(e))
    ]
    return matches[0] if len(matches) == 1 else None
