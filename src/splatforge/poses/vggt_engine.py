"""VGGT feed-forward poses (optional): facebookresearch/vggt, weights only from a local path or cache.

Frames are preprocessed the way VGGT's `load_and_preprocess_images(mode="pad")` does: the longest side
resized to 518 px, the other to a multiple of 14 (patch size), then padded to a 518x518 square with
white. VGGT predicts, per frame, world-to-camera OpenCV extrinsics (the first frame is the world) and
intrinsics at that network resolution, plus a depth map with a confidence. `to_original` undoes the
preprocessing so that cameras and points refer to the original images; depth points above a
confidence threshold (capped) become the sparse points. Optionally the cameras are refined by
pycolmap bundle adjustment on SIFT tracks (features matched as in the colmap engine).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splatforge.errors import PoseError
from splatforge.poses.options import PoseOptions
from splatforge.rundir import RunDir
from splatforge.scene.types import Camera, Frame, Scene

log = logging.getLogger("splatforge")
HF_MODEL = "facebook/VGGT-1B"
PATCH = 14
INSTALL_ADVICE = ("install VGGT with `pip install git+https://github.com/facebookresearch/vggt`, download its "
                  f"weights once (`huggingface-cli download {HF_MODEL}`), then pass --vggt-weights PATH (a "
                  "model.pt file or the downloaded folder); or use the default colmap engine")


@dataclass(frozen=True)
class Preprocess:
    """How one original image sits in the network input: resized by (sx, sy), then offset by the padding."""

    width: int  # original size
    height: int
    sx: float
    sy: float
    pad_left: int
    pad_top: int
    inner_width: int  # resized size, before padding
    inner_height: int


def preprocess_geometry(width: int, height: int, target: int = 518) -> Preprocess:
    """VGGT's pad mode: longest side -> target, other side -> nearest multiple of 14, pad to target^2."""
    if width >= height:
        new_w = target
        new_h = max(PATCH, round(height * (target / width) / PATCH) * PATCH)
    else:
        new_h = target
        new_w = max(PATCH, round(width * (target / height) / PATCH) * PATCH)
    pad_left, pad_top = (target - new_w) // 2, (target - new_h) // 2
    return Preprocess(width, height, new_w / width, new_h / height, pad_left, pad_top, new_w, new_h)


def load_images(paths: list[Path], target: int = 518) -> tuple[np.ndarray, list[Preprocess]]:
    """Images as a (S, 3, target, target) float32 array in [0, 1] (white padding), and their geometry."""
    from PIL import Image

    from splatforge.capture.imageio import read_image

    batch, geoms = [], []
    for path in paths:
        im = Image.fromarray(read_image(path))
        g = preprocess_geometry(im.width, im.height, target)
        # PIL's bicubic (antialiased) resize: VGGT's own preprocessing
        resized = np.asarray(im.resize((g.inner_width, g.inner_height), Image.Resampling.BICUBIC),
                             dtype=np.float32) / 255.0
        canvas = np.ones((target, target, 3), np.float32)
        canvas[g.pad_top:g.pad_top + g.inner_height, g.pad_left:g.pad_left + g.inner_width] = resized
        batch.append(canvas.transpose(2, 0, 1))
        geoms.append(g)
    return np.stack(batch), geoms


def to_original(intrinsic: np.ndarray, geom: Preprocess) -> Camera:
    """A PINHOLE camera of the original image from VGGT's 3x3 intrinsics at the network resolution.

    Pixel coordinates use the corner-origin convention on both sides, so resizing is a pure scale and
    padding a pure shift: x_net = sx * x + pad_left.
    """
    k = np.asarray(intrinsic, dtype=np.float64)
    return Camera("PINHOLE", geom.width, geom.height, fx=k[0, 0] / geom.sx, fy=k[1, 1] / geom.sy,
                  cx=(k[0, 2] - geom.pad_left) / geom.sx, cy=(k[1, 2] - geom.pad_top) / geom.sy)


def depth_points(depth: np.ndarray, conf: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray,
                 images: np.ndarray, geoms: list[Preprocess], threshold: float, max_points: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World points (M, 3) and colours (M, 3) uint8 from depth maps, confident pixels only (no padding).

    depth, conf: (S, H, W) z-depth and confidence at network resolution; intrinsic (S, 3, 3);
    extrinsic (S, 3, 4) world-to-camera; images (S, 3, H, W) in [0, 1].
    """
    pts, cols = [], []
    s, h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5  # pixel centres, corner-origin convention
    for i in range(s):
        g = geoms[i]
        inside = np.zeros((h, w), bool)
        inside[g.pad_top:g.pad_top + g.inner_height, g.pad_left:g.pad_left + g.inner_width] = True
        keep = inside & (conf[i] > threshold) & np.isfinite(depth[i]) & (depth[i] > 0)
        if not keep.any():
            continue
        k = intrinsic[i]
        z = depth[i][keep]
        cam = np.stack([(u[keep] - k[0, 2]) / k[0, 0] * z, (v[keep] - k[1, 2]) / k[1, 1] * z, z], axis=1)
        rot, trans = extrinsic[i][:3, :3], extrinsic[i][:3, 3]
        pts.append((cam - trans) @ rot)  # R^T (x_cam - t), row-vector form
        cols.append((images[i].transpose(1, 2, 0)[keep] * 255).round().astype(np.uint8))
    if not pts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    points, colors = np.concatenate(pts), np.concatenate(cols)
    if len(points) > max_points:
        idx = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points, colors = points[idx], colors[idx]
    return points, colors


def _import_vggt():
    try:
        from vggt.models.vggt import VGGT
        from vggt.utils.pose_enc import pose_encoding_to_extri_intri
    except ImportError as exc:
        raise PoseError(f"the vggt engine needs the `vggt` package, which is not installed ({exc.name})",
                        INSTALL_ADVICE) from None
    return VGGT, pose_encoding_to_extri_intri


def _cached_snapshot() -> Path | None:
    """The local Hugging Face snapshot of VGGT-1B, if one exists (never downloads)."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snapshots = hub.expanduser() / f"models--{HF_MODEL.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/")) if snapshots.is_dir() else []
    return found[-1] if found else None


def load_model(weights: Path | None, device: str):
    VGGT, _ = _import_vggt()
    source = Path(weights).expanduser() if weights is not None else _cached_snapshot()
    if source is None or not source.exists():
        raise PoseError("VGGT's weights are not on this machine" + (f" ({weights} does not exist)" if weights else ""),
                        INSTALL_ADVICE)
    import torch

    if source.is_file():
        model = VGGT()
        model.load_state_dict(torch.load(source, map_location="cpu"))
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach the network
        model = VGGT.from_pretrained(str(source))
    return model.to(device).eval()


def predict(model, images: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """Run VGGT. Returns extrinsic (S,3,4), intrinsic (S,3,3), depth (S,H,W), depth_conf (S,H,W)."""
    import torch

    _, pose_encoding_to_extri_intri = _import_vggt()
    x = torch.from_numpy(images).to(device)
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.get_device_capability()[0] >= 8 else torch.float16
    with torch.no_grad():
        if device == "cuda":
            with torch.autocast("cuda", dtype=dtype):
                pred = model(x)
        else:
            pred = model(x)
        extrinsic, intrinsic = pose_encoding_to_extri_intri(pred["pose_enc"], x.shape[-2:])
    as_np = lambda t: t.float().cpu().numpy()  # noqa: E731
    hw = tuple(x.shape[-2:])
    return {"extrinsic": as_np(extrinsic).reshape(-1, 3, 4), "intrinsic": as_np(intrinsic).reshape(-1, 3, 3),
            "depth": as_np(pred["depth"]).reshape(-1, *hw),  # (B, S, H, W, 1) -> (S, H, W)
            "depth_conf": as_np(pred["depth_conf"]).reshape(-1, *x.shape[-2:])}


def vggt_scene(image_dir: Path, names: list[str], options: PoseOptions, model=None) -> Scene:
    """Cameras and confident depth points of the frames, in the original images' pixels."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if model is None:
        model = load_model(options.vggt_weights, device)
    images, geoms = load_images([image_dir / n for n in names], options.vggt_resolution)
    pred = predict(model, images, device)
    frames = []
    for i, name in enumerate(names):
        w2c = np.eye(4)
        w2c[:3] = pred["extrinsic"][i]
        frames.append(Frame(name, image_dir / name, to_original(pred["intrinsic"][i], geoms[i]), w2c))
    points, colors = depth_points(pred["depth"], pred["depth_conf"], pred["intrinsic"], pred["extrinsic"],
                                  images, geoms, options.vggt_conf_threshold, options.vggt_max_points, options.seed)
    return Scene(frames=frames, points=points, colors=colors)


def run_vggt(run: RunDir, names: list[str], options: PoseOptions, say):
    """(reconstruction, seconds, PoseResult extras) for the vggt engine."""
    from splatforge.scene.colmap import scene_to_reconstruction

    say("vggt", 0.1)
    t = time.perf_counter()
    scene = vggt_scene(run.frames, names, options)
    seconds = {"vggt": time.perf_counter() - t}
    notes = [f"VGGT feed-forward at {options.vggt_resolution} px; {len(scene.points)} depth points with "
             f"confidence > {options.vggt_conf_threshold}"]
    if not options.vggt_refine:
        return scene_to_reconstruction(scene), seconds, {"notes": notes}
    import pycolmap

    from splatforge.poses import known

    rec, info = known.triangulate(run, scene, names, options, say)
    t = time.perf_counter()
    ba = pycolmap.BundleAdjustmentOptions()
    ba.refine_focal_length = True
    pycolmap.bundle_adjustment(rec, ba)
    seconds.update(info["seconds"])
    seconds["refinement"] = time.perf_counter() - t
    notes.append(f"refined by bundle adjustment on {rec.num_points3D()} SIFT tracks")
    return rec, seconds, {"matching": info["matching"], "mapper": "vggt + bundle adjustment", "notes": notes}
