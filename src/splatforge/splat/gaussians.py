"""The Gaussians: parameters in the layout gsplat's strategies expect, and their initialisation.

Parameters (a `torch.nn.ParameterDict`, N Gaussians, K = (sh_degree + 1) ** 2):
    means      [N, 3]     world positions
    scales     [N, 3]     log of the standard deviations along the local axes
    quats      [N, 4]     rotation as a quaternion (w, x, y, z), not necessarily normalised
    opacities  [N]        logit of the opacity
    sh0        [N, 1, 3]  degree-0 spherical-harmonic coefficient (the base colour)
    shN        [N, K-1, 3] higher-degree coefficients (zeros at start; degrees are switched on during training)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> degree-0 SH coefficient (gsplat adds 0.5 back after evaluation)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh: torch.Tensor) -> torch.Tensor:
    return sh * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


@dataclass
class InitOptions:
    """How to create the first Gaussians."""

    sh_degree: int = 3
    init_opacity: float = 0.1
    init_scale: float = 1.0  # multiplies the mean distance to the 3 nearest neighbours
    random_points: int = 100_000  # used when the scene has no SfM points
    random_extent: float = 3.3  # random points fill a cube of half-size this many camera radii (gsplat: 3 x 1.1)
    max_points: int | None = None  # subsample the SfM points to at most this many


def knn_mean_distance(points: torch.Tensor, k: int = 3, chunk: int = 4096) -> torch.Tensor:
    """Mean distance of each point to its k nearest other points. points [N, 3] -> [N].

    Chunked brute force (N x chunk distances at a time): fine for the few hundred thousand SfM
    points of a capture on a GPU, and for tiny scenes on the CPU.
    """
    n = len(points)
    if n <= 1:
        return torch.ones(n, device=points.device)
    k = min(k, n - 1)
    chunk = max(1, min(chunk, (1 << 26) // n))  # at most 64M distances (256 MB) at a time
    out = torch.empty(n, device=points.device)
    for start in range(0, n, chunk):
        d = torch.cdist(points[start:start + chunk], points)  # [chunk, N]
        nearest = d.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out[start:start + chunk] = nearest.mean(dim=1)
    return out


def init_gaussians(
    points: np.ndarray | None,
    colors: np.ndarray | None,
    scene_center: np.ndarray,
    scene_radius: float,
    options: InitOptions,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.nn.ParameterDict:
    """Gaussians at the SfM points (colour from the points), or random ones in a cube when there are none.

    points [M, 3] float, colors [M, 3] uint8 (or None); scene_center [3], scene_radius: the radius of the
    camera positions, used for the random cube. Randomness comes only from `generator` (on the CPU).
    """
    if points is not None and len(points) > 0:
        pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
        rgb = torch.as_tensor(np.asarray(colors), dtype=torch.float32) / 255.0 if colors is not None \
            else torch.full_like(pts, 0.5)
        if options.max_points is not None and len(pts) > options.max_points:
            keep = torch.randperm(len(pts), generator=generator)[: options.max_points]
            pts, rgb = pts[keep], rgb[keep]
    else:
        n = options.random_points
        half = options.random_extent * max(scene_radius, 1e-3)
        center = torch.as_tensor(np.asarray(scene_center), dtype=torch.float32)
        pts = center + (torch.rand(n, 3, generator=generator) * 2 - 1) * half
        rgb = torch.rand(n, 3, generator=generator)
    n = len(pts)
    if points is None or len(points) == 0:
        # uniform random points: the expected mean distance to the 3 nearest (~0.73 side / n^(1/3)) instead of
        # an O(n^2) search over 100k points, which the CPU cannot afford
        dist = torch.full((n,), 0.73 * 2 * half / max(n, 1) ** (1 / 3))
    else:
        dist = knn_mean_distance(pts.to(device)).cpu().clamp_min(1e-7)
    scales = torch.log(dist * options.init_scale)[:, None].repeat(1, 3)
    quats = torch.rand(n, 4, generator=generator)
    opacities = torch.logit(torch.full((n,), options.init_opacity))
    k = num_sh_bases(options.sh_degree)
    sh0 = rgb_to_sh(rgb)[:, None, :]
    shN = torch.zeros(n, k - 1, 3)  # noqa: N806 - gsplat's name
    params = {"means": pts, "scales": scales, "quats": quats, "opacities": opacities, "sh0": sh0, "shN": shN}
    return torch.nn.ParameterDict({name: torch.nn.Parameter(params[name].to(device)) for name in PARAM_NAMES})


def empty_like_state(shapes: dict[str, tuple[int, ...]], device: torch.device | str) -> torch.nn.ParameterDict:
    """Parameters of the given shapes (zeros), to be filled from a checkpoint."""
    return torch.nn.ParameterDict({name: torch.nn.Parameter(torch.zeros(shapes[name], device=device))
                                   for name in PARAM_NAMES})


def activated(params: torch.nn.ParameterDict | dict) -> dict[str, torch.Tensor]:
    """Values as the rasteriser wants them: scales [N,3] (exp), opacities [N] (sigmoid), colors [N,K,3]."""
    return {
        "means": params["means"],
        "quats": params["quats"],
        "scales": torch.exp(params["scales"]),
        "opacities": torch.sigmoid(params["opacities"]),
        "colors": torch.cat([params["sh0"], params["shN"]], dim=1),
    }


def sh_degree_at(step: int, max_degree: int, interval: int) -> int:
    """Active SH degree at `step`: one more every `interval` steps (as 3DGS does), up to `max_degree`."""
    if interval <= 0:
        return max_degree
    return min(max_degree, step // interval)

