"""Samples GPU busy %, GPU memory and CPU load of a process tree while it runs (NVML / psutil)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    t: float  # seconds since the epoch
    gpu_util: float | None  # percent of time a kernel ran, over NVML's last sample period
    gpu_mem_gb: float | None  # memory used on the GPU (whole device)
    cpu_percent: float  # summed over the process tree (100 = one core busy)


@dataclass
class Sampler:
    """Poll `pid` (and its children) every `interval` seconds in a thread until `stop()`."""

    pid: int
    interval: float = 0.5
    gpu_index: int = 0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > self.gpu_index:
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(self.gpu_index))
        except Exception:  # no NVIDIA driver: CPU-only sampling
            self._nvml = None

    @property
    def has_gpu(self) -> bool:
        return self._nvml is not None

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples

    def _loop(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        known: dict[int, psutil.Process] = {}
        while not self._stop.is_set():
            cpu = 0.0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                p = known.setdefault(proc.pid, proc)
                try:
                    cpu += p.cpu_percent(None)
                except psutil.Error:
                    pass
            util = mem = None
            if self._nvml is not None:
                nvml, handle = self._nvml
                try:
                    util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                    mem = nvml.nvmlDeviceGetMemoryInfo(handle).used / 1024**3
                except Exception:
                    pass
            self.samples.append(Sample(time.time(), util, mem, cpu))
            self._stop.wait(self.interval)


def summarize(samples: list[Sample], start: float | None = None, end: float | None = None) -> dict:
    """Median/max of the samples within [start, end] (epoch seconds); None where nothing was sampled."""
    import statistics

    window = [s for s in samples if (start is None or s.t >= start) and (end is None or s.t <= end)]
    gpu = [s.gpu_util for s in window if s.gpu_util is not None]
    mem = [s.gpu_mem_gb for s in window if s.gpu_mem_gb is not None]
    cpu = [s.cpu_percent for s in window]
    return {
        "samples": len(window),
        "gpu_busy_median": statistics.median(gpu) if gpu else None,
        "gpu_busy_max": max(gpu) if gpu else None,
        "gpu_mem_max_gb": max(mem) if mem else None,
        "cpu_percent_median": statistics.median(cpu) if cpu else None,
    }
