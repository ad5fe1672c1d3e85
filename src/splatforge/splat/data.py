"""Training data: every image decoded once, undistorted to PINHOLE if needed, kept on the device as uint8.

No DataLoader, no worker processes, no shared memory: a capture of 50 1080x1920 photos is 300 MB of
uint8 (1000 of them 6.2 GB), which sits on any training GPU; each image is decoded (in threads) straight
into its slot of one preallocated tensor, so host memory holds a few decoded images, never the set; batches are indexed on the device and converted to float
there. When the images do not fit beside the model (the `gpu_fraction` of free memory), they stay
in pinned CPU memory and are copied per batch (non-blocking).

Undistortion: cameras with OPENCV distortion (k1 k2 p1 p2, e.g. fox's reference transforms.json)
are undistorted at load with OpenCV (`cv2.getOptimalNewCameraMatrix(alpha=0)` + `cv2.remap`), so
that every training camera is PINHOLE: the new intrinsics keep only valid pixels, at the original
image size. The pose stage's own `images_undistorted/` need none of this.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from splatforge.console import log
from splatforge.errors import InputError
from splatforge.scene import Camera, Scene


@dataclass
class DataOptions:
    test_every: int = 8  # every n-th image (0, n, 2n, ...) is held out; 0 = none
    downscale: float = 1.0  # divide image sizes by this
    gpu_fraction: float = 0.5  # images go to the GPU when they take at most this share of free memory


@dataclass
class Views:
    """A set of posed images.

    images: [V, H, W, 3] uint8 when all have one size (on the device, or pinned CPU), else a list of V
    [H_i, W_i, 3] uint8 tensors (then a batch holds one image); viewmats [V, 4, 4] float32 world-to-camera
    (OpenCV axes) and Ks [V, 3, 3] float32 on the device; names [V].
    """

    images: torch.Tensor | list[torch.Tensor]
    viewmats: torch.Tensor
    Ks: torch.Tensor  # noqa: N815
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def same_size(self) -> bool:
        return torch.is_tensor(self.images)

    @property
    def index_device(self) -> torch.device:
        """Where batch indices should live: with the stacked images (nothing waits), else on the CPU."""
        return self.images.device if self.same_size else torch.device("cpu")

    def size(self, i: int = 0) -> tuple[int, int]:
        """(width, height) of image i."""
        h, w = (self.images.shape[1:3] if self.same_size else self.images[i].shape[:2])
        return int(w), int(h)

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images [B, H, W, 3] float in [0, 1], viewmats [B, 4, 4], Ks [B, 3, 3] for indices idx [B].

        idx should live on `index_device` (then nothing waits); other placements are moved.
        """
        if self.same_size:
            images = self.images[idx.to(self.images.device)]
        else:
            images = torch.stack([self.images[int(i)] for i in idx.cpu()])
        if images.device != device:
            images = images.to(device, non_blocking=True)  # pinned -> device, asynchronous
        idx_d = idx.to(self.viewmats.device)
        return images.float() / 255.0, self.viewmats[idx_d], self.Ks[idx_d]


@dataclass
class TrainData:
    train: Views
    test: Views | None
    scene_center: np.ndarray  # [3]
    scene_radius: float
    points: np.ndarray | None
    colors: np.ndarray | None
    undistorted: bool


def prepare_image(path: Path, camera: Camera, downscale: float) -> tuple[np.ndarray, Camera]:
    """Decode, undistort (OPENCV -> PINHOLE), downscale. Returns RGB uint8 [H, W, 3] and its PINHOLE camera."""
    import cv2

    from splatforge.capture.imageio import read_image

    img = read_image(path)  # the stored pixels, as the pose stage saw them (no EXIF orientation)
    h, w = img.shape[:2]
    if (w, h) != (camera.width, camera.height):
        if (w, h) == (camera.height, camera.width):
            raise InputError(f"{path.name} is {w}x{h} but its camera says {camera.width}x{camera.height} "
                             "(rotated?)", "rotate the image back, or fix w/h in the scene file")
        camera = camera.scaled(w / camera.width)
    if camera.has_distortion:
        if camera.model not in ("OPENCV", "SIMPLE_RADIAL", "RADIAL"):
            raise InputError(f"cannot undistort camera model {camera.model}", "undistort the images first")
        d = dict(camera.distortion_dict)
        dist = np.array([d.get("k1", 0.0), d.get("k2", 0.0), d.get("p1", 0.0), d.get("p2", 0.0)])
        new_k, _ = cv2.getOptimalNewCameraMatrix(camera.K, dist, (w, h), alpha=0)
        map1, map2 = cv2.initUndistortRectifyMap(camera.K, dist, None, new_k, (w, h), cv2.CV_32FC1)
        img = cv2.remap(img, map1, map2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        camera = Camera("PINHOLE", w, h, float(new_k[0, 0]), float(new_k[1, 1]), float(new_k[0, 2]),
                        float(new_k[1, 2]))
    else:
        camera = camera.as_pinhole()
    if downscale and downscale != 1:
        nw, nh = max(1, round(w / downscale)), max(1, round(h / downscale))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        camera = camera.scaled(nw / w)
        camera = Camera("PINHOLE", nw, nh, camera.fx, camera.fy, camera.cx, camera.cy)
    return np.ascontiguousarray(img), camera


def split_indices(n: int, test_every: int) -> tuple[list[int], list[int]]:
    """(train, test): every `test_every`-th index from 0 is a test view (none when test_every <= 0 or n < 2)."""
    if test_every <= 0 or n < 2:
        return list(range(n)), []
    test = [i for i in range(n) if i % test_every == 0]
    return [i for i in range(n) if i % test_every != 0], test


def _fits_on_gpu(nbytes: int, device: torch.device, fraction: float) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def _empty_images(count: int, shape: tuple[int, ...], device: torch.device, fraction: float) -> torch.Tensor:
    """[count, *shape] uint8 on the device when it fits (`fraction` of free memory), else pinned CPU memory."""
    nbytes = count * math.prod(shape)
    if _fits_on_gpu(nbytes, device, fraction):
        return torch.empty((count, *shape), dtype=torch.uint8, device=device)
    log.info("training images (%.1f GB) stay in pinned CPU memory", nbytes / 1e9)
    return torch.empty((count, *shape), dtype=torch.uint8, pin_memory=True)


def _load_views(frames: list, options: DataOptions, device: torch.device, pool: ThreadPoolExecutor) -> Views:
    """Decode `frames` straight into one preallocated [V, H, W, 3] uint8 tensor (on the device, or pinned).

    Each decoded image is copied into its slot and dropped, so the host holds a few images at a time, not
    the whole set twice (a list of arrays, then np.stack's copy: 3.9 GB peak for 1.9 GB of 1080p images).
    Images of another size than the first (several cameras) are kept apart; then a batch holds one image.
    """
    first = prepare_image(frames[0].image, frames[0].camera, options.downscale)
    stack = _empty_images(len(frames), first[0].shape, device, options.gpu_fraction)
    cameras: list[Camera | None] = [None] * len(frames)
    odd: dict[int, np.ndarray] = {}

    def put(k: int) -> None:
        img, cam = first if k == 0 else prepare_image(frames[k].image, frames[k].camera, options.downscale)
        cameras[k] = cam
        if img.shape == stack.shape[1:]:
            stack[k].copy_(torch.from_numpy(img))
        else:
            odd[k] = img

    list(pool.map(put, range(len(frames))))
    images: torch.Tensor | list[torch.Tensor] = stack
    if odd:  # several cameras of different sizes: one image per batch
        pinned = stack.device.type == "cpu" and stack.is_pinned()
        place = lambda t: t.pin_memory() if pinned else t.to(stack.device)  # noqa: E731
        images = [place(torch.from_numpy(odd[k])) if k in odd else stack[k] for k in range(len(frames))]
    viewmats = torch.as_tensor(np.stack([f.w2c for f in frames]), dtype=torch.float32, device=device)
    ks = torch.as_tensor(np.stack([c.K for c in cameras]), dtype=torch.float32, device=device)
    return Views(images=images, viewmats=viewmats, Ks=ks, names=[f.name for f in frames])


def load_data(scene: Scene, options: DataOptions, device: torch.device) -> TrainData:
    """Decode, undistort and place every image; split into training and held-out views."""
    frames = sorted(scene.frames, key=lambda f: f.name)
    if not frames:
        raise InputError("the scene has no frames", "run the pose stage first")
    train_idx, test_idx = split_indices(len(frames), options.test_every)
    if not train_idx:
        raise InputError("no training images left after holding out test views", "use a larger --test-every")
    # Decoding, undistortion and resizing release the GIL in OpenCV: threads, not processes.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        train = _load_views([frames[i] for i in train_idx], options, device, pool)
        test = _load_views([frames[i] for i in test_idx], options, device, pool) if test_idx else None
    undistorted = any(f.camera.has_distortion for f in frames)
    centers = np.array([f.center for f in frames])
    center = centers.mean(axis=0)
    radius = float(np.linalg.norm(centers - center, axis=1).max())
    if not math.isfinite(radius) or radius <= 0:
        radius = 1.0
    return TrainData(train=train, test=test, scene_center=center,
                     scene_radius=radius, points=scene.points, colors=scene.colors, undistorted=undistorted)
