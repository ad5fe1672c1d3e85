"""A small, dense, pure-PyTorch Gaussian rasteriser: the yardstick for gsplat, and the CPU backend.

It follows gsplat 1.5's CUDA "classic"/"antialiased" pinhole path step by step, written densely so
that PyTorch's autograd gives every gradient:

1. world -> camera, 3D covariance R S S^T R^T, EWA projection with the Jacobian clamped to 1.3x the
   field of view, a 0.3 px^2 blur (eps2d) added to the 2D covariance (antialiased mode multiplies
   the opacity by the blur's compensation);
2. an opacity-aware screen radius (min(3.33, sqrt(2 ln(255 o))) standard deviations); Gaussians
   behind the near plane, outside the image, or fainter than 1/255 get radius 0 and are skipped;
3. per pixel (centre at +0.5), the visible Gaussians sorted by depth are composited front to back:
   alpha = min(0.999, o exp(-sigma)), contributions below 1/255 skipped, and a pixel stops before the
   Gaussian that would bring its transmittance to 1e-4 or below.

Differences from gsplat: gsplat visits the Gaussians whose screen box touches a pixel's 16x16 tile,
this only those whose box holds the pixel (the others are below 1/255 there and skipped by both),
transmittance is accumulated in float64 log space, and float summation orders differ. So images and gradients agree to float precision, not bit for bit.

Written by hand rather than built from `gsplat.cuda._torch_impl`, whose compositing needs gsplat's
CUDA kernels (`rasterize_to_indices_in_range`) and nerfacc: a yardstick must not share the code it
measures. Its projection and SH evaluation are compared with `_torch_impl` in the CPU tests.

Cost is O(number of (pixel, Gaussian) pairs inside the Gaussians' screen boxes): meant for scenes of
~64x64 pixels and a few thousand Gaussians.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

ALPHA_THRESHOLD = 1.0 / 255.0
MIN_TRANSMITTANCE = 1e-4
MAX_ALPHA = 0.999

_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
_C0 = 0.28209479177387814


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real SH basis (3DGS order and signs) of unit directions. dirs [..., 3] -> [..., (degree+1)^2]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Colour from SH. dirs [..., 3] (any length), coeffs [..., K, 3] with K >= (degree+1)^2 -> [..., 3]."""
    k = (degree + 1) ** 2
    basis = sh_basis(degree, F.normalize(dirs, dim=-1))  # [..., k]
    return (basis[..., None] * coeffs[..., :k, :]).sum(dim=-2)


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """quats [N, 4] (w, x, y, z), any norm -> rotation matrices [N, 3, 3]."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def project(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] (activated)
    opacities: torch.Tensor,  # [N] (activated)
    viewmats: torch.Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes
    Ks: torch.Tensor,  # [C, 3, 3]  # noqa: N803
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    antialiased: bool = False,
) -> dict[str, torch.Tensor]:
    """EWA projection. Returns means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32,
    opacities [C,N] (times the compensation when antialiased)."""
    rot = quat_to_rotmat(quats)
    m = rot * scales[:, None, :]
    covars = m @ m.transpose(1, 2)  # [N, 3, 3]
    r, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", r, means) + t[:, None, :]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", r, covars, r)  # [C, N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    safe_z = torch.where(tz.abs() > 1e-8, tz, torch.full_like(tz, 1e-8))
    txc = safe_z * torch.clamp(tx / safe_z, -lim_x_neg, lim_x_pos)
    tyc = safe_z * torch.clamp(ty / safe_z, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / safe_z, zero, -fx * txc / safe_z**2,
                       zero, fy / safe_z, -fy * tyc / safe_z**2], dim=-1).reshape(*tz.shape, 2, 3)
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * tx / safe_z + cx, fy * ty / safe_z + cy], dim=-1)  # [C, N, 2]

    det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    det_safe = det.clamp_min(1e-10)
    conics = torch.stack([cov2d[..., 1, 1] / det_safe, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det_safe,
                          cov2d[..., 0, 0] / det_safe], dim=-1)
    opac = opacities[None, :].expand_as(tz)
    if antialiased:
        opac = opac * torch.sqrt(torch.clamp(det_orig / det_safe, min=1e-12))  # min > 0: finite sqrt gradient

    with torch.no_grad():
        o = opac.detach()
        extend = torch.sqrt(2.0 * torch.log(o.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp_max(3.33)
        rx = torch.ceil(extend * cov2d[..., 0, 0].detach().clamp_min(0).sqrt())
        ry = torch.ceil(extend * cov2d[..., 1, 1].detach().clamp_min(0).sqrt())
        mx, my = means2d[..., 0].detach(), means2d[..., 1].detach()
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane) & (o >= ALPHA_THRESHOLD)
        valid &= (rx > 0) | (ry > 0)
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], dim=-1) * valid[..., None]
    return {"means2d": means2d, "conics": conics, "depths": tz, "radii": radii.to(torch.int32),
            "opacities": opac, "means_c": means_c}


def composite(
    means2d: torch.Tensor,  # [C, N, 2]
    conics: torch.Tensor,  # [C, N, 3]
    opacities: torch.Tensor,  # [C, N]
    colors: torch.Tensor,  # [C, N, D]
    depths: torch.Tensor,  # [C, N]
    radii: torch.Tensor,  # [C, N, 2] int, 0 = not visible
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back compositing -> colours [C, H, W, D], alphas [C, H, W, 1].

    Works on the list of (pixel, Gaussian) pairs whose pixel lies in the Gaussian's screen box
    (|x + 0.5 - mean| <= radius per axis): outside it alpha < 1/255 by the radius' construction, so
    the result equals compositing all Gaussians. Pairs are sorted by (pixel, depth); transmittance
    is the exclusive cumulative product per pixel, computed as a segmented cumulative sum of
    log(1 - alpha) in float64.
    """
    n_cam, n = means2d.shape[:2]
    device = means2d.device
    n_ch = colors.shape[-1]
    with torch.no_grad():
        flat_vis = torch.nonzero((radii > 0).all(-1).reshape(-1)).squeeze(1)  # ids into C*N
        cam = flat_vis // n
        m = means2d.detach().reshape(-1, 2)[flat_vis]
        r = radii.reshape(-1, 2)[flat_vis].to(m.dtype)
        x0 = torch.floor(m[:, 0] - r[:, 0] - 0.5).clamp(0, width - 1).long()
        x1 = torch.ceil(m[:, 0] + r[:, 0] - 0.5).clamp(0, width - 1).long()
        y0 = torch.floor(m[:, 1] - r[:, 1] - 0.5).clamp(0, height - 1).long()
        y1 = torch.ceil(m[:, 1] + r[:, 1] - 0.5).clamp(0, height - 1).long()
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        counts = bw * bh
        g = torch.repeat_interleave(torch.arange(len(flat_vis), device=device), counts)  # pair -> visible idx
        local = torch.arange(len(g), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts,
                                                                             counts)
        px = x0[g] + local % bw[g]
        py = y0[g] + local // bw[g]
        pixel = (cam[g] * height + py) * width + px  # [M] global pixel index
        depth_rank = torch.empty(len(flat_vis), dtype=torch.long, device=device)
        depth_rank[torch.argsort(depths.detach().reshape(-1)[flat_vis], stable=True)] = \
            torch.arange(len(flat_vis), device=device)
        order = torch.argsort(pixel * len(flat_vis) + depth_rank[g])
        g, pixel, px, py = g[order], pixel[order], px[order], py[order]
        gid = flat_vis[g]  # pair -> index into C*N
        first = torch.ones_like(pixel, dtype=torch.bool)
        first[1:] = pixel[1:] != pixel[:-1]
        seg_start = torch.cummax(torch.where(first, torch.arange(len(pixel), device=device),
                                             torch.zeros_like(pixel)), 0).values
    pix = torch.stack([px, py], dim=-1).to(means2d.dtype) + 0.5
    # one gather for everything per pair (gathers dominate the cost on the CPU)
    packed = torch.cat([means2d, conics, opacities[..., None], colors], dim=-1).reshape(n_cam * n, -1)[gid]
    d = packed[:, 0:2] - pix
    c = packed[:, 2:5]
    sigma = 0.5 * (c[:, 0] * d[:, 0] ** 2 + c[:, 2] * d[:, 1] ** 2) + c[:, 1] * d[:, 0] * d[:, 1]
    alpha = torch.clamp_max(packed[:, 5] * torch.exp(-sigma), MAX_ALPHA)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    log1m = torch.log1p(-alpha.double())
    excl = torch.cumsum(log1m, 0) - log1m
    log_t = excl - excl[seg_start]  # exclusive, per pixel
    with torch.no_grad():  # a pixel is done before the Gaussian that would take T to 1e-4 or below
        keep = (log_t + log1m) > math.log(MIN_TRANSMITTANCE)
    weights = (alpha * torch.exp(log_t).to(alpha.dtype)) * keep
    total = n_cam * height * width
    out_c = torch.zeros(total, n_ch, dtype=colors.dtype, device=device).index_add(
        0, pixel, weights[:, None] * packed[:, 6:])
    out_a = torch.zeros(total, dtype=alpha.dtype, device=device).index_add(0, pixel, weights)
    return out_c.reshape(n_cam, height, width, n_ch), out_a.reshape(n_cam, height, width, 1)


def rasterize_reference(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4]
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    colors: torch.Tensor,  # [N, K, 3] SH coefficients (sh_degree given) or [N, D] features
    viewmats: torch.Tensor,  # [C, 4, 4]
    Ks: torch.Tensor,  # [C, 3, 3]  # noqa: N803
    width: int,
    height: int,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: torch.Tensor | None = None,  # [C, D]
    rasterize_mode: str = "classic",
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Same contract as `gsplat.rasterization(..., packed=False)` for what splatforge uses.

    Returns colours [C, H, W, D], alphas [C, H, W, 1] and `info` with the keys gsplat's strategies read:
    means2d [C, N, 2] (a non-leaf tensor in the graph: call `retain_grad()` to get its gradient),
    radii [C, N, 2] int32, depths [C, N], conics [C, N, 3], opacities [C, N], width, height,
    n_cameras, n_batches, gaussian_ids (None: not packed).
    """
    n_cam = len(viewmats)
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d,
                   near_plane=near_plane, far_plane=far_plane, antialiased=rasterize_mode == "antialiased")
    if sh_degree is not None:
        cam_centers = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        dirs = means[None, :, :] - cam_centers[:, None, :]  # [C, N, 3]
        feats = torch.clamp_min(eval_sh(sh_degree, dirs, colors[None].expand(n_cam, *colors.shape)) + 0.5, 0.0)
    else:
        feats = colors[None].expand(n_cam, *colors.shape)
    images, alphas = composite(proj["means2d"], proj["conics"], proj["opacities"], feats, proj["depths"],
                               proj["radii"], width, height)
    if backgrounds is not None:
        images = images + (1.0 - alphas) * backgrounds[:, None, None, :]
    info = {
        "means2d": proj["means2d"], "radii": proj["radii"], "depths": proj["depths"],
        "conics": proj["conics"], "opacities": proj["opacities"], "width": width, "height": height,
        "n_cameras": n_cam, "n_batches": 1, "gaussian_ids": None, "camera_ids": None,
        "tile_size": 16, "tile_width": math.ceil(width / 16), "tile_height": math.ceil(height / 16),
    }
    return images, alphas, info
