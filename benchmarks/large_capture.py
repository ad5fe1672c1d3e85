"""Large captures (issue 14): time and memory of `splatforge run` against image count, in one bounded run.

On the GPU host (working tree root as cwd, after `. benchmarks/gpu_env.sh`):

    python3 benchmarks/large_capture.py --fox .gpu/fox --video .gpu/colosseum.mp4 --out /tmp/large

1. trains fox (`--preset fast`, poses from its transforms.json) as the source splat;
2. renders orbits of 150, 300, 600 and 1000 views at 1920x1080 from it (`splatforge.synthetic_splat`):
   posed captures, so the pose stage takes the poses as given;
3. runs every stage of `splatforge run` on each, as separate child processes (frames+check, poses, train,
   export+report) to get each one's peak RSS (os.wait4) and CPU seconds; seconds per stage from run.json,
   peak GPU memory and hold-out PSNR from train.json, checkpoint and export sizes from the run folder;
4. runs frames, check and poses (COLMAP, GPU SIFT when pycolmap has CUDA) on colosseum.mp4 at 150, 300 and
   all frames: the matching scheme, its pairs, seconds for features/matching/mapping, registered/total.

Every item has its own timeout, and none starts past the overall budget (`--budget`, 420 s): the largest
colosseum item is skipped, and said so, when its estimate (from the 300-frame item) does not fit. Writes
OUT/large_capture.json after every item and prints a table last.

`--cpu-smoke`: the same path at toy sizes on the CPU (reference backend, a ray-cast synthetic source
capture instead of fox, orbits of 8 and 16 views at 96x64, colosseum at 12 and 24 frames).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

T0 = time.monotonic()
ROOT = Path(__file__).resolve().parent.parent


def remaining(budget: float) -> float:
    return budget - (time.monotonic() - T0)


def child(args: list[str], timeout: float, log: Path) -> dict:
    """Run `python -m ...args` in its own process group; wall and CPU seconds, peak RSS (GB), exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    t = time.monotonic()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        timed_out, status, usage = False, None, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "timed_out": timed_out, "wall_s": round(time.monotonic() - t, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_gb": round(usage.ru_maxrss / 1e6, 3)}


def splatforge(*args: str) -> list[str]:
    return ["-m", "splatforge", *args]


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stage_seconds(run: Path) -> dict:
    stages = read(run / "run.json").get("stages", {})
    return {k: round(v["seconds"], 2) for k, v in stages.items() if isinstance(v, dict) and v.get("seconds")}


def size_mb(path: Path) -> float | None:
    return round(path.stat().st_size / 1e6, 2) if path.is_file() else None


def run_posed(capture: Path, run: Path, train_args: list[str], timeout: float, log: Path) -> dict:
    """Every stage of `splatforge run` on a posed capture, in four child processes."""
    if run.exists():
        shutil.rmtree(run)
    steps = [("frames+check", [str(capture), "-o", str(run), "--until", "check", "--force"]),
             ("poses", [str(run), "--until", "poses"]),
             ("train", [str(run), "--until", "train", *train_args]),
             ("export+report", [str(run)])]
    result: dict = {"children": {}}
    deadline = time.monotonic() + timeout
    for name, args in steps:
        left = deadline - time.monotonic()
        if left < 5:
            result["children"][name] = {"skipped": "item timeout"}
            break
        c = child(splatforge("run", *args), left, log)
        result["children"][name] = c
        if c["rc"] != 0:
            break
    result["stage_s"] = stage_seconds(run)
    train = read(run / "train.json")
    ckpts = sorted((run / "checkpoints").glob("*")) if (run / "checkpoints").is_dir() else []
    result.update(
        peak_rss_gb=max((c.get("peak_rss_gb", 0) for c in result["children"].values()), default=None),
        peak_gpu_mem_gb=train.get("peak_gpu_mem_gb"), psnr=(train.get("eval") or {}).get("psnr"),
        train_views=train.get("train_views"), held_out=train.get("held_out"), gaussians=train.get("num_gaussians"),
        train_phases=train.get("phases"), checkpoint_mb=size_mb(ckpts[-1]) if ckpts else None,
        ply_mb=size_mb(run / "export" / "scene.ply"), spz_mb=size_mb(run / "export" / "scene.spz"),
        exports={p.name: size_mb(p) for p in sorted((run / "export").glob("*")) if p.is_file()}
        if (run / "export").is_dir() else {},
        ok=all(c.get("rc") == 0 for c in result["children"].values()) and len(result["children"]) == len(steps))
    return result


def run_video(video: Path, run: Path, frames: int, timeout: float, log: Path) -> dict:
    """frames -> check -> poses (COLMAP) on `frames` frames of the video."""
    if run.exists():
        shutil.rmtree(run)
    c = child(splatforge("run", str(video), "-o", str(run), "--frames", str(frames), "--until", "poses", "--force"),
              timeout, log)
    poses = read(run / "poses.json")
    matching = poses.get("matching") or ""
    pairs = None
    if matching.startswith("exhaustive"):
        n = poses.get("total") or 0
        pairs = n * (n - 1) // 2
    elif "; " in matching and matching.rstrip().endswith(" pairs"):
        pairs = int(matching.rsplit("; ", 1)[1].split()[0])
    return {**c, "stage_s": stage_seconds(run), "frames": len(list((run / "frames").glob("*.jpg")))
            if (run / "frames").is_dir() else 0,
            "matching": matching, "pairs": pairs, "pose_s": poses.get("seconds"), "mapper": poses.get("mapper"),
            "registered": poses.get("registered"), "total": poses.get("total"), "engine": poses.get("engine"),
            "ok": c["rc"] == 0}


def make_smoke_source(out: Path, log: Path) -> Path:
    """A toy posed capture (the numpy ray-caster) standing in for fox on the CPU."""
    code = ("import sys; from pathlib import Path; from splatforge.synthetic import SyntheticOptions, "
            "make_synthetic_capture as m; m(Path(sys.argv[1]), SyntheticOptions(n_views=12, width=96, height=72, "
            "n_points=3000, seed=0))")
    c = child(["-c", code, str(out)], 120, log)
    if c["rc"] != 0:
        raise SystemExit(f"could not make the smoke capture (see {log})")
    return out


def table(doc: dict) -> str:
    rows = ["count  ok    frames+chk  poses  train   export+rep  rss_GB  gpu_GB  ckpt_MB  ply_MB  spz_MB  PSNR"]
    for key in sorted(doc["posed"], key=int):
        r = doc["posed"][key]
        ch = r.get("children", {})

        def s(name, ch=ch):
            c = ch.get(name, {})
            return f"{c['wall_s']:.0f}s" if "wall_s" in c else "-"

        def f(v, fmt="{:.2f}"):
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        rows.append(f"{key:>5}  {('yes' if r.get('ok') else 'NO'):4}  {s('frames+check'):>10}  {s('poses'):>5}  "
                    f"{s('train'):>5}  {s('export+report'):>10}  {f(r.get('peak_rss_gb')):>6}  "
                    f"{f(r.get('peak_gpu_mem_gb')):>6}  {f(r.get('checkpoint_mb'), '{:.0f}'):>7}  "
                    f"{f(r.get('ply_mb'), '{:.0f}'):>6}  {f(r.get('spz_mb'), '{:.1f}'):>6}  {f(r.get('psnr')):>5}")
    rows.append("")
    rows.append("colosseum  frames  wall   rss_GB  scheme       pairs   feat_s  match_s  map_s  registered")
    for key, r in doc["video"].items():
        if "skipped" in r:
            rows.append(f"{key:>9}  skipped: {r['skipped']}")
            continue
        ps = r.get("pose_s") or {}

        def g(k, ps=ps):
            return f"{ps[k]:.1f}" if isinstance(ps.get(k), (int, float)) else "-"

        scheme = (r.get("matching") or "-").split(":")[0]
        rows.append(f"{key:>9}  {r.get('frames', 0):>6}  {r['wall_s']:>4.0f}s  {r['peak_rss_gb']:>6.2f}  "
                    f"{scheme:11}  {str(r.get('pairs') or '-'):>6}  {g('features'):>6}  {g('matching'):>7}  "
                    f"{g('mapping'):>5}  {r.get('registered')}/{r.get('total')}{'' if r.get('ok') else '  FAILED'}")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fox", type=Path, default=Path(".gpu/fox"), help="a posed capture to train the source splat on")
    ap.add_argument("--source-run", type=Path, default=None,
                    help="a run folder with a trained splat to render the orbits from (skips training fox)")
    ap.add_argument("--video", type=Path, default=Path(".gpu/colosseum.mp4"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/large_capture"))
    ap.add_argument("--counts", default=None, help="orbit sizes, e.g. 150,300,600,1000")
    ap.add_argument("--frames", default=None, help="colosseum frame counts; the last is 'all' (e.g. 150,300,567)")
    ap.add_argument("--size", default=None, help="orbit image size WxH (default 1920x1080)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for everything (default 420)")
    ap.add_argument("--preset", default=None, help="training preset (default fast)")
    ap.add_argument("--parts", default="posed,video", help="posed (orbits), video (colosseum) or both")
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU, reference backend")
    a = ap.parse_args()
    a.parts = set(a.parts.split(","))
    smoke = a.cpu_smoke
    counts = [int(c) for c in (a.counts or ("8,16" if smoke else "150,300,600,1000")).split(",")]
    frames = [int(c) for c in (a.frames or ("8,12,567" if smoke else "150,300,567")).split(",")]
    size = a.size or ("96x64" if smoke else "1920x1080")
    budget = a.budget or (600.0 if smoke else 420.0)
    preset = a.preset or ("demo" if smoke else "fast")
    train_args = ["--preset", preset]
    if smoke:
        train_args += ["--backend", "reference", "--steps", "6", "--max-gaussians", "2000"]
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "large_capture.log"
    log.write_text("")
    doc: dict = {"machine": os.uname().nodename, "cpu_smoke": smoke, "counts": counts, "size": size, "preset": preset,
                 "budget_s": budget, "source": {}, "renders": {}, "posed": {}, "video": {}, "log": str(log)}
    out_json = a.out / "large_capture.json"

    def save():
        doc["elapsed_s"] = round(time.monotonic() - T0, 1)
        out_json.write_text(json.dumps(doc, indent=1))

    try:
        import torch

        doc["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        doc["gpu"] = f"unknown ({e})"

    if "posed" not in a.parts:
        counts = []
    renders: dict[int, Path] = {}
    if counts:
        # 1. the source splat
        if a.source_run is not None:
            src_run = a.source_run
            c = {"rc": 0, "reused": str(src_run)}
        else:
            fox = make_smoke_source(a.out / "smoke_source", log) if smoke else a.fox
            src_run = a.out / "source_run"
            if src_run.exists():
                shutil.rmtree(src_run)
            c = child(splatforge("run", str(fox), "-o", str(src_run), "--until", "train", "--force", *train_args),
                      min(180, remaining(budget)), log)
        doc["source"] = {**c, "stage_s": stage_seconds(src_run), "psnr": (read(src_run / "train.json").get("eval") or {})
                         .get("psnr")}
        save()
        print(f"source splat: {c}", flush=True)
        if c["rc"] != 0:
            print(table(doc))
            raise SystemExit(f"training the source splat failed (see {log})")

        # 2. orbits, all rendered by one child (one CUDA start)
        code = ("import sys; from pathlib import Path; from splatforge.synthetic_splat import orbit_from_run as o; "
                "w, h = map(int, sys.argv[4].split('x')); "
                "[o(Path(sys.argv[1]), Path(sys.argv[2]) / f'orbit_{n}', int(n), w, h, sys.argv[5]) "
                "for n in sys.argv[3].split(',')]")
        for n in counts:
            if (a.out / f"orbit_{n}").exists():
                shutil.rmtree(a.out / f"orbit_{n}")
        c = child(["-c", code, str(src_run), str(a.out), ",".join(map(str, counts)), size,
                   "reference" if smoke else "auto"], min(180, remaining(budget)), log)
        for n in counts:
            cap = a.out / f"orbit_{n}"
            if (cap / "transforms.json").is_file():
                renders[n] = cap
            doc["renders"][n] = {"views": len(list((cap / "images").glob("*.jpg"))) if cap.exists() else 0,
                                 "mb": round(sum(p.stat().st_size for p in cap.rglob("*") if p.is_file()) / 1e6, 1)
                                 if cap.exists() else None}
        doc["renders"]["child"] = c
        save()
        print(f"orbits: {c} {doc['renders']}", flush=True)

    # 3./4. in an order that gets the smallest and the largest of each first
    def posed(n):
        if n not in renders:
            return
        left = remaining(budget)
        per = 40 + 0.15 * n if not smoke else 150
        if left < 20:
            doc["posed"][str(n)] = {"skipped": "out of time", "ok": False}
            return
        doc["posed"][str(n)] = run_posed(renders[n], a.out / f"run_{n}", train_args, min(per * 2, left - 5), log)
        save()
        print(f"posed {n}: {doc['posed'][str(n)]}", flush=True)

    def video(n, estimate=None):
        key = str(n)
        left = remaining(budget)
        if not a.video.is_file():
            doc["video"][key] = {"skipped": f"{a.video} missing"}
            return
        if estimate is not None and estimate > left - 5:
            doc["video"][key] = {"skipped": f"estimated {estimate:.0f} s, {left:.0f} s left"}
            print(f"colosseum {n}: skipped (estimated {estimate:.0f} s, {left:.0f} s left)", flush=True)
            save()
            return
        if left < 15:
            doc["video"][key] = {"skipped": "out of time"}
            return
        doc["video"][key] = run_video(a.video, a.out / f"video_{n}", n, left - 5, log)
        save()
        print(f"colosseum {n}: {doc['video'][key]}", flush=True)

    def estimate(n):  # from the largest colosseum item done: mapping grows faster than linearly (power 1.5)
        done = [(int(k), r["wall_s"]) for k, r in doc["video"].items() if r.get("ok")]
        if not done:
            return None
        k, wall = max(done)
        return wall * (n / k) ** 1.5

    # The smallest and the largest of each first; the largest colosseum item last, only if its estimate fits.
    order = [("posed", counts[0])] if counts else []
    order += [("video", frames[0])]
    order += [("posed", counts[-1])] if len(counts) > 1 else []
    order += [("video", n) for n in frames[1:-1]] + [("posed", n) for n in counts[1:-1]]
    order += [("video", frames[-1])] if len(frames) > 1 else []
    for part, n in order:
        if part not in a.parts:
            continue
        if part == "posed":
            posed(n)
        else:
            video(n, estimate(n) if n == frames[-1] and len(frames) > 1 else None)
    save()
    print(f"\nlarge captures: {doc['elapsed_s']} s in all; JSON: {out_json}\n")
    print(table(doc))


if __name__ == "__main__":
    main()
