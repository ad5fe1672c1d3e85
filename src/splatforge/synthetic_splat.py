"""Large posed captures in seconds: an orbit of views rendered from a trained splat.

`synthetic.py` ray-casts a procedural room in numpy: 8 CPU seconds per 1920x1080 view on the dev machine,
so 1000 views would take over two CPU hours. A trained splat (e.g. fox after `splatforge run --preset
fast`) renders a 1080p view in milliseconds with gsplat on a GPU: `make_orbit_capture` circles the
splat's own training cameras (same centre, height and distance, pointed at the point nearest to every
camera's optical axis), renders N views with `splat.render.render`, writes them as JPEGs (encoded in
threads while the next views render) and writes a `transforms.json` (PINHOLE, OpenCV poses written in
the OpenGL convention the reader expects) plus `points.ply` (the opaque Gaussians' centres and base
colours, as sparse points to start training from). `splatforge run OUT` then takes the poses as given.

On the CPU the pure-PyTorch reference backend does the same at tiny sizes (the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from splatforge.scene.conventions import camera_center, look_at_w2c
from splatforge.scene.types import Camera, Frame, Scene

MAX_POINTS = 100_000  # sparse points written to points.ply


def axes_focus(scene: Scene) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis: what an orbit capture looks at."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for f in scene.frames:
        c = camera_center(f.w2c)
        d = f.w2c[2, :3]  # the camera's +z (viewing direction) in world coordinates
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ c
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:  # all axes parallel
        return scene.centers.mean(axis=0)


def orbit_poses(scene: Scene, n: int, elevation_scale: float = 1.0, max_gap_deg: float = 90.0) -> list[np.ndarray]:
    """n world-to-camera poses (OpenCV axes) on a circle (or the arc the cameras cover) around `scene`'s
    cameras' focus, at their median distance and height, with the cameras' mean "up" as the circle's axis."""
    target = axes_focus(scene)
    up = np.mean([-f.w2c[1, :3] for f in scene.frames], axis=0)  # OpenCV: -y is up in the image
    up = up / max(np.linalg.norm(up), 1e-12)
    offsets = scene.centers - target
    height = float(np.median(offsets @ up)) * elevation_scale
    flat = offsets - np.outer(offsets @ up, up)
    radius = float(np.median(np.linalg.norm(flat, axis=1)))
    e1 = flat[0] / max(np.linalg.norm(flat[0]), 1e-12) if radius > 1e-9 else np.cross(up, [1.0, 0.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    radius = radius if radius > 1e-9 else 1.0
    # The arc the source cameras cover (the circle less its largest empty gap, when that gap is wider than
    # max_gap_deg): the orbit stays where the splat was seen from (fox: its front half, not its back).
    angles = np.sort(np.arctan2(flat @ e2, flat @ e1) % (2 * math.pi))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
    start, span = 0.0, 2 * math.pi
    if len(angles) > 1 and gaps.max() > math.radians(max_gap_deg):
        g = int(np.argmax(gaps))
        start, span = float(angles[(g + 1) % len(angles)]), float(2 * math.pi - gaps[g])
    poses = []
    for k in range(n):
        a = start + (span * k / n if span >= 2 * math.pi - 1e-9 else span * k / max(n - 1, 1))
        eye = target + radius * (math.cos(a) * e1 + math.sin(a) * e2) + height * up
        poses.append(look_at_w2c(eye, target, up))
    return poses


def orbit_camera(scene: Scene, width: int, height: int) -> Camera:
    """PINHOLE camera of width x height with the field of view of the source camera's shorter side."""
    src = scene.frames[0].camera
    short_src = min(src.width, src.height)
    f_src = src.fx if src.width <= src.height else src.fy
    f = f_src * min(width, height) / short_src
    return Camera("PINHOLE", width, height, f, f, width / 2, height / 2)


def sparse_points(params: Mapping[str, torch.Tensor], max_points: int = MAX_POINTS, min_opacity: float = 0.5,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) and base colours (N, 3) uint8 of (at most max_points of) the opaque Gaussians."""
    from splatforge.splat.gaussians import sh_to_rgb

    means = params["means"].detach().float().cpu()
    keep = torch.sigmoid(params["opacities"].detach().float().cpu().reshape(-1)) >= min_opacity
    if int(keep.sum()) < 100:  # a barely trained splat: take them all
        keep = torch.ones(len(means), dtype=torch.bool)
    idx = torch.nonzero(keep).reshape(-1).numpy()
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    rgb = sh_to_rgb(params["sh0"].detach().float().cpu()[idx, 0]).clamp(0, 1)
    return means[idx].numpy().astype(np.float64), (rgb * 255).round().byte().numpy()


@torch.no_grad()
def make_orbit_capture(params: Mapping[str, torch.Tensor], sh_degree: int, source: Scene, out_dir: Path,
                       n_views: int, width: int = 1920, height: int = 1080, backend: str = "auto",
                       device: torch.device | str | None = None, jpeg_quality: int = 95, batch: int = 8,
                       elevation_scale: float = 1.0) -> Scene:
    """Render an n_views orbit of the splat `params` into out_dir/images/0001.jpg ... and write
    out_dir/transforms.json (+ points.ply). `source`: the scene the splat was trained on (its cameras place
    the orbit). Returns the written scene (as `read_transforms` reads it back)."""
    import cv2

    from splatforge.scene.transforms import write_transforms
    from splatforge.splat.render import render, resolve_backend

    if n_views < 1 or width < 8 or height < 8:
        raise ValueError("need at least one view of at least 8x8 pixels")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = resolve_backend(backend, device)
    params = {k: v.detach().to(device) for k, v in params.items()}
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    camera = orbit_camera(source, width, height)
    poses = orbit_poses(source, n_views, elevation_scale)
    k = torch.as_tensor(camera.K, dtype=torch.float32, device=device)
    frames = []

    def write(path: Path, rgb: np.ndarray) -> None:
        if not cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
            raise OSError(f"could not write {path}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        pending = []
        for start in range(0, n_views, batch):
            chunk = poses[start:start + batch]
            viewmats = torch.as_tensor(np.stack(chunk), dtype=torch.float32, device=device)
            ks = k.expand(len(chunk), 3, 3).contiguous()
            out = render(params, viewmats, ks, width, height, sh_degree, backend=backend)
            images = out.image.clamp(0, 1).mul(255).round().byte().cpu().numpy()
            for j, w2c in enumerate(chunk):
                path = image_dir / f"{start + j + 1:04d}.jpg"
                pending.append(pool.submit(write, path, np.ascontiguousarray(images[j])))
                frames.append(Frame(name=f"images/{path.name}", image=path, camera=camera, w2c=w2c))
            while len(pending) > 64:  # rendering outruns encoding: hold at most ~64 decoded views
                pending.pop(0).result()
        for p in pending:
            p.result()
    points, colors = sparse_points(params)
    scene = Scene(frames=frames, points=points, colors=colors,
                  meta={"orbit_of": str(source.meta.get("source", "")), "n_views": n_views})
    write_transforms(scene, out_dir / "transforms.json", ply_file="points.ply")
    return scene


def orbit_from_run(run_dir: Path, out_dir: Path, n_views: int, width: int = 1920, height: int = 1080,
                   backend: str = "auto", device: torch.device | str | None = None) -> Scene:
    """`make_orbit_capture` from a run folder: its newest checkpoint and its training scene."""
    from splatforge.rundir import RunDir
    from splatforge.scene import read_scene
    from splatforge.splat.checkpoint import load_checkpoint, newest_checkpoint

    run = RunDir(Path(run_dir))
    ckpt = newest_checkpoint(run.checkpoints)
    if ckpt is None:
        raise FileNotFoundError(f"{run.checkpoints} holds no checkpoint: train first")
    saved = load_checkpoint(ckpt)
    sh_degree = int(saved["config"]["sh_degree"])
    return make_orbit_capture(saved["params"], sh_degree, read_scene(run.transforms_json), out_dir, n_views,
                              width, height, backend, device)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Render an orbit capture (JPEGs + transforms.json) from a run.")
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--backend", default="auto")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    t0 = time.perf_counter()
    scene = orbit_from_run(a.run, a.out, a.n, w, h, a.backend)
    print(f"{len(scene.frames)} views {w}x{h} -> {a.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
