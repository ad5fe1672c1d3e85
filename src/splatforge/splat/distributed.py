"""One scene trained on several GPUs: the Gaussians sharded over processes, the views spread over them.

    train(run, TrainOptions(gpus="0,1,2,3"))      # or `splatforge train RUN --gpus 0,1,2,3`

gsplat's distributed rasterization (`rasterization(..., distributed=True)`, after "On Scaling Up 3D
Gaussian Splatting Training", Grendel) does the work: each process holds a shard of the Gaussians and
renders its own views; every process projects its shard into all processes' cameras and an all-to-all
sends each projected Gaussian where it is seen. The gradients come back the same way, so a shard is
trained by every process's images, and densification runs on each shard with no more communication.

What this module adds around the ordinary training loop (`trainer.train_process`, which runs in every
process with a `World`):
- the launcher: one spawned process per GPU, NCCL between them (gloo on the CPU, where the reference
  backend gathers every shard instead: `render.py`), progress and the result sent back to the caller
  by rank 0, a cancel passed down;
- the recipe for W processes: W views per step, so the schedule is shortened to steps / W (gsplat's
  `steps_scaler`), learning rates scaled for the larger batch, the Gaussian cap divided among shards;
- decisions taken together: ranks agree on logging, checkpoints and cancelling at fixed steps
  (`World.sync_every`), never on their own clocks, so no process waits in a collective the others
  skip;
- checkpoints as one process writes them: shards gathered on rank 0 in rank order with their sizes,
  so export, view and a resume read the same file; a resume with the same GPU count takes each shard
  back.

Why hand-written: gsplat ships the rasterizer and its collectives, but its multi-GPU driver is the
example trainer (`examples/simple_trainer.py` with `world_size`), not a library function.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from splatforge.errors import InputError, TrainingError

# Per-Gaussian rows in gsplat's optimizer and strategy states (gathered and split with the parameters).
PER_GAUSSIAN_OPTIMIZER_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
PER_GAUSSIAN_STRATEGY_STATE = ("grad2d", "count", "radii")
# Steps between the points where ranks agree on logging, checkpoints and cancelling: each agreement is a
# collective that waits for the GPUs, so not every step.
SYNC_EVERY = 20


@dataclass(frozen=True)
class World:
    """The processes training one scene. `World()` is one process: every collective is then a no-op."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # where this rank's collectives run
    sync_every: int = SYNC_EVERY  # ranks agree on logging, checkpoints and cancelling every this many steps

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def decides_at(self, done: int, total: int) -> bool:
        """Whether step `done` is one where ranks may log, checkpoint or stop."""
        return not self.distributed or done % self.sync_every == 0 or done == total

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank when it is true on any."""
        if not self.distributed:
            return tuple(flags)
        t = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def sum(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def parse_gpus(text: str) -> list[str]:
    """"0,1,3" -> ["cuda:0", "cuda:1", "cuda:3"]; "all" -> every visible GPU; "" -> [] (one device, as
    `--device` says). "cpu,cpu" runs the multi-process path on the CPU (reference backend, gloo): it
    exists to test that path without GPUs."""
    text = (text or "").strip()
    if not text:
        return []
    if text == "all":
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "cpu":
            out.append("cpu")
        elif part.isdigit():
            out.append(f"cuda:{int(part)}")
        else:
            raise ValueError(f"--gpus takes GPU indices like 0,1,2 or 'all', not {text!r}")
    if len(set(out) - {"cpu"}) != len([d for d in out if d != "cpu"]):
        raise ValueError(f"--gpus names a GPU twice: {text!r}")
    if "cpu" in out and len(set(out)) > 1:
        raise ValueError("--gpus cannot mix the CPU and GPUs")
    return out


def check_devices(devices: list[str]) -> None:
    """Refuse, before anything starts, GPUs that are not there."""
    cuda = [d for d in devices if d.startswith("cuda")]
    if not cuda:
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [d for d in cuda if int(d.split(":")[1]) >= count]
    if missing:
        raise InputError(f"--gpus asks for {', '.join(missing)} but {count} GPU(s) are visible",
                         "pick indices that `splatforge doctor` or nvidia-smi lists")


# --- shards -------------------------------------------------------------------------------------------

def shard_bounds(sizes: list[int], rank: int) -> tuple[int, int]:
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


def even_shards(n: int, world: int) -> list[int]:
    return [n // world + (1 if r < n % world else 0) for r in range(world)]


def take_rows(obj: Any, start: int, end: int, keys: Iterable[str] | None = None) -> Any:
    """Rows start:end of every tensor in a (nested) state, or only of those under `keys` at the top."""
    if isinstance(obj, dict):
        return {k: (take_rows(v, start, end) if keys is None or k in keys else v) for k, v in obj.items()}
    if torch.is_tensor(obj) and obj.dim() > 0:
        return obj[start:end]
    return obj


def shard_optimizer_state(state: dict, start: int, end: int) -> dict:
    """An optimizer's `state_dict()` for the full set -> the one for rows start:end."""
    per_param = {i: take_rows(s, start, end, PER_GAUSSIAN_OPTIMIZER_STATE) for i, s in state["state"].items()}
    return {"state": per_param, "param_groups": state["param_groups"]}


def _gather_rows(local: torch.Tensor, world: World) -> torch.Tensor | None:
    """Rank 0: the rows of every rank, in rank order (on the CPU); other ranks: None."""
    local = local.detach()
    if not world.distributed:
        return local.cpu()
    n = torch.tensor([local.shape[0]], dtype=torch.int64, device=world.device)
    sizes = [torch.zeros_like(n) for _ in range(world.size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=world.device)
    padded[: local.shape[0]] = local.to(world.device)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    if not world.main:
        return None
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).cpu()


def gather_state(params, optimizers: dict, strategy_state: dict, world: World) -> dict | None:
    """The whole model on rank 0, as one process would hold it: {"params", "optimizers", "strategy",
    "shards"} (CPU tensors); None on other ranks. Every rank must call it."""
    shards = _gather_rows(torch.tensor([len(params["means"])]), world)
    full_params = {k: _gather_rows(v, world) for k, v in params.items()}
    full_opt = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        per_param = {}
        for i, s in sd["state"].items():
            per_param[i] = {k: (_gather_rows(v, world) if k in PER_GAUSSIAN_OPTIMIZER_STATE else v)
                            for k, v in s.items()}
        full_opt[name] = {"state": per_param, "param_groups": sd["param_groups"]}
    full_strategy = {k: (_gather_rows(v, world) if k in PER_GAUSSIAN_STRATEGY_STATE and torch.is_tensor(v)
                         else (v.detach().cpu() if torch.is_tensor(v) else v))
                     for k, v in strategy_state.items()}
    if not world.main:
        return None
    return {"params": full_params, "optimizers": full_opt, "strategy": full_strategy,
            "shards": [int(s) for s in shards.tolist()]}


# --- the launcher --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, devices: list[str], port: int, run_path: str, options, messages, cancel) -> None:
    """One process of a multi-GPU run: join the group, train, send rank 0's progress and result back."""
    from splatforge.errors import SplatforgeError
    from splatforge.splat.trainer import TrainingInterrupted, train_process
    from splatforge.stage import Events

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which cancels all ranks
    device = torch.device(devices[rank])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # ranks on the CPU share its cores: each takes its part instead of all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=len(devices),
                            **({"device_id": device} if device.type == "cuda" else {}))
    world = World(rank=rank, size=len(devices), device=device)
    events = Events(on_progress=(lambda p: messages.put(("progress", p))) if rank == 0 else None,
                    cancel=_MpCancel(cancel))
    try:
        result = train_process(run_path, options, events, world, device)
        if rank == 0:
            messages.put(("result", result))
    except TrainingInterrupted as exc:
        if rank == 0:
            messages.put(("interrupted", exc.step))
    except SplatforgeError as exc:
        messages.put(("error", (rank, exc.message, exc.hint)))
    except BaseException as exc:  # noqa: BLE001 - reported to the launcher, which raises it there
        import traceback

        messages.put(("error", (rank, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8))))
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group is already reported
            pass


class _MpCancel:
    """A multiprocessing.Event behind the `threading.Event` interface `Events` uses."""

    def __init__(self, event):
        self._event = event

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()


def train_on_devices(run_path, options, events, devices: list[str]):
    """Run `train_process` in one process per device; return rank 0's `TrainResult`.

    Progress reaches `events` from rank 0; `events.cancel` is passed to every rank (they stop together at
    the next agreed step, after a checkpoint). A rank that dies stops the others and raises.
    """
    import torch.multiprocessing as mp

    from splatforge.splat.trainer import TrainingInterrupted

    check_devices(devices)
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    messages, cancel = ctx.Queue(), ctx.Event()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, devices, port, str(run_path), options, messages, cancel),
                         name=f"splatforge-train-rank{r}") for r in range(len(devices))]
    for p in procs:
        p.start()
    result, interrupted, errors = None, None, []
    died_at: float | None = None
    try:
        while True:
            if events.cancelled:
                cancel.set()
            try:
                kind, payload = messages.get(timeout=0.2)
            except queue.Empty:
                alive = [p for p in procs if p.is_alive()]
                if not alive:
                    break
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and died_at is None:
                    died_at = time.monotonic()
                # a rank that died (or failed) leaves the others waiting in a collective
                if died_at is not None and time.monotonic() - died_at > 10:
                    for p in alive:
                        p.terminate()
                continue
            if kind == "progress":
                events.on_progress and events.on_progress(payload)
            elif kind == "result":
                result = payload
            elif kind == "interrupted":
                interrupted = payload
            elif kind == "error":  # the other ranks may be waiting in a collective for this one: stop them
                errors.append(payload)
                cancel.set()
                died_at = died_at or time.monotonic()
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    if errors:
        rank, message, hint = errors[0]
        raise TrainingError(f"multi-GPU training failed on rank {rank}: {message}", hint or
                            "run on one GPU (leave out --gpus) to see the error without the other processes")
    if interrupted is not None:
        raise TrainingInterrupted(interrupted)
    if result is None:
        codes = {p.name: p.exitcode for p in procs}
        raise TrainingError(f"multi-GPU training ended without a result (exit codes {codes})",
                            "a process was killed (out of host memory?); run again to resume from the last checkpoint")
    return result
