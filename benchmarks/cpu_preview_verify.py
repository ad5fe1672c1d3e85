"""End to end: the CPU preview that `choose_cpu_preview` picks for a posed run, trained by `splatforge.splat.train`.

    PYTHONPATH=src python benchmarks/cpu_preview_verify.py /tmp/fern_run --threads 1

Copies the run's scene into a scratch run folder (images stay where they are), asks `preview_for_scene` for
the configuration, trains it with the trainer's defaults otherwise (progress every 5 s, checkpoints, renders),
and prints the choice, the prediction, CPU and wall seconds of the whole `train` call and the hold-out
metrics. With --threads 1 the CPU seconds are what one idle core would take, whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a posed run folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cores", type=int, default=2, help="cores to tell choose_cpu_preview")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from train_bench import prepare

    from splatforge.splat.cpu_preview import preview_for_scene
    from splatforge.splat.trainer import TrainOptions, train
    from splatforge.stage import Events

    torch.set_num_threads(args.threads)
    run = prepare(args.run, args.scratch or Path(tempfile.mkdtemp(prefix="cpu_preview_")), "preview")
    preview = preview_for_scene(run / "transforms.json", cores=args.cores)
    print(preview.explanation, flush=True)
    events = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    def on_progress(event) -> None:
        if event.train is not None:
            events.append((round(time.perf_counter() - wall0, 1), event.train.step, event.train.eta_s))

    result = train(run, TrainOptions(**preview.train_options(), show_progress=False, resume=False),
                   Events(on_progress=on_progress))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gaps = [b[0] - a[0] for a, b in zip(events, events[1:])]
    out = {"preview": preview.to_dict(), "threads": args.threads, "train_cpu_s": round(cpu, 1),
           "train_wall_s": round(wall, 1), "predicted_s": preview.predicted_s, "eval": result.eval,
           "initial_eval": result.initial_eval, "num_gaussians": result.num_gaussians,
           "progress_events": len(events), "longest_gap_between_events_s": max(gaps) if gaps else None}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
