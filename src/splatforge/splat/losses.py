"""The training loss: l1_weight * L1 + ssim_weight * (1 - SSIM), its SSIM, and PSNR for progress logs.

Hold-out metrics as papers and gsplat report them (torchmetrics' SSIM, LPIPS) are in `metrics.py`.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
import torch.nn.functional as F  # noqa: N812


@functools.lru_cache(maxsize=8)
def gauss_window_1d(size: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def separable_blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, 'valid' padding. x [B, C, H, W]."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_window(height: int, width: int, window: int) -> int:
    """The window used on an image: `window`, or on tiny ones (coarse-to-fine thumbnails) the largest odd fit."""
    if min(height, width) < window:
        window = min(height, width)
        window -= 1 - window % 2
    return window


@functools.lru_cache(maxsize=1)
def _fused_ssim():
    """splat/fused_ssim.py's Triton SSIM, or None where Triton is not importable."""
    try:
        from splatforge.splat.fused_ssim import fused_ssim
    except ImportError:
        return None
    return fused_ssim


_fused_failed: list[str] = []  # a Triton that imports but cannot compile or launch: warned once, not retried


def _fused_for(a: torch.Tensor):
    """The fused SSIM for CUDA float32 images, or None (CPU, Triton missing, SPLATFORGE_FUSED_SSIM=0, failed)."""
    if not a.is_cuda or a.dtype != torch.float32 or _fused_failed:
        return None
    return _fused_ssim() if os.environ.get("SPLATFORGE_FUSED_SSIM", "1") != "0" else None


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The loss's SSIM: mean SSIM of images a, b [B, H, W, C] in [0, 1] (Gaussian window 11, sigma 1.5, as 3DGS).

    Two separable 1D convolutions over the five moment maps stacked in one batch: cheap on the CPU, no
    extra package. 'valid' windows only (no zero-padding bias at the border), as gsplat's loss (fused-ssim,
    padding="valid"); the reported hold-out SSIM is `metrics.holdout_ssim`. CUDA float32 images go to
    the Triton kernels of splat/fused_ssim.py instead (same values; SPLATFORGE_FUSED_SSIM=0 turns them off).
    """
    fused = _fused_for(a)
    if fused is not None:
        try:
            return fused(a, b, window, sigma)
        except ValueError:
            pass  # what it does not take (a gradient for b, odd shapes): the reference decides
        except Exception as exc:  # e.g. no C compiler for Triton's launcher: slower, but training goes on
            _fused_failed.append(repr(exc))
            warnings.warn(f"fused SSIM unavailable ({exc!r}); using the cuDNN reference", stacklevel=2)
    x = a.permute(0, 3, 1, 2)
    y = b.permute(0, 3, 1, 2)
    window = ssim_window(x.shape[-2], x.shape[-1], window)
    g = gauss_window_1d(window, sigma, str(x.device), x.dtype)
    n = x.shape[0]
    moments = separable_blur(torch.cat([x, y, x * x, y * y, x * y]), g)
    mx, my, sxx, syy, sxy = moments.split(n)
    mx2, my2, mxy = mx * mx, my * my, mx * my
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mxy + c1) * (2 * (sxy - mxy) + c2)
    den = (mx2 + my2 + c1) * ((sxx - mx2) + (syy - my2) + c2)
    return (num / den).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] (mean over the whole batch)."""
    mse = F.mse_loss(a, b)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2,
                     l1_weight: float = 1.0) -> torch.Tensor:
    """l1_weight * L1 + ssim_weight * (1 - SSIM) of [B, H, W, 3] images (3DGS: 0.8 and 0.2)."""
    return l1_weight * F.l1_loss(render, target) + ssim_weight * (1.0 - ssim(render, target))
