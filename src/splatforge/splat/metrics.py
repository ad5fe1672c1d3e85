"""Hold-out image metrics as gsplat's simple_trainer reports them, so numbers compare with papers.

PSNR and SSIM per held-out view, averaged over views: SSIM is torchmetrics'
`structural_similarity_index_measure` with data range 1 (Gaussian window 11, sigma 1.5, reflection
padding; computed here, see `holdout_ssim`), not the training loss's SSIM (`losses.ssim`, "valid" windows, which is what gsplat's loss
uses and differs from the metric by up to ~0.02 on small images). LPIPS is AlexNet-LPIPS on [0, 1]
inputs (gsplat's default `lpips_net="alex"`), computed only when its weights are on disk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812

from splatforge.splat import lpips_files
from splatforge.splat.losses import gauss_window_1d, psnr, separable_blur, ssim

LpipsFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]
MIN_LPIPS_SIDE = 31  # AlexNet's stride-4 convolution and two 3x3 poolings need at least this many pixels


def holdout_ssim(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images [B, H, W, C] in [0, 1] over the batch, as torchmetrics'
    `structural_similarity_index_measure(data_range=1.0)` computes it: Gaussian window 11, sigma 1.5,
    images reflection-padded by 5 so the SSIM map has the image's size, variances clamped at 0.

    Computed here rather than by torchmetrics: importing torchmetrics took 11.8 s on the GPU host (it
    pulls in torch._dynamo and every metric), more than a whole training loop on fox. The test suite
    checks this against torchmetrics itself.
    """
    x, y = render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    window, pad = 11, 5
    if min(x.shape[-2:]) <= pad:  # reflection padding needs more pixels than it adds: the loss's SSIM
        return ssim(render, target)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    g = gauss_window_1d(window, 1.5, str(x.device), x.dtype)
    n = x.shape[0]
    mx, my, sxx, syy, sxy = separable_blur(torch.cat([x, y, x * x, y * y, x * y]), g).split(n)
    mx2, my2, mxy = mx * mx, my * my, mx * my
    c1, c2 = 0.01**2, 0.03**2
    var_x, var_y = (sxx - mx2).clamp_min(0.0), (syy - my2).clamp_min(0.0)
    ssim_map = ((2 * mxy + c1) * (2 * (sxy - mxy) + c2)) / ((mx2 + my2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(n, -1).mean(-1).mean()


def holdout_psnr(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1]: on one view, torchmetrics' PeakSignalNoiseRatio(data_range=1)."""
    return psnr(render, target)


def make_lpips(device: torch.device | str) -> tuple[LpipsFn | None, str | None]:
    """(LPIPS function [B, H, W, 3] x2 -> mean over the batch, None), or (None, why not and how to enable).

    The function gives None for images smaller than MIN_LPIPS_SIDE pixels.

    Never downloads and never raises: a missing or broken weights file only leaves LPIPS out.
    """
    files = lpips_files.check_files()
    if files.problem is not None:
        return None, files.note
    backbone, heads = lpips_files.alexnet_weights(), lpips_files.lpips_heads()
    try:
        from splatforge.splat.perceptual import AlexLpips

        net = AlexLpips.from_files(backbone, heads).to(device)
    except Exception as exc:  # a corrupt file must not stop training
        return None, lpips_files.LpipsFiles(f"{backbone} could not be loaded ({exc})",
                                            lpips_files.how_to_enable()).note

    @torch.no_grad()
    def lpips(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        if min(render.shape[1:3]) < MIN_LPIPS_SIDE:
            return None
        return net(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)).mean()

    return lpips, None
