"""SSIM of the training loss as four Triton kernels over channel-last images (CUDA, or Triton's interpreter).

Same definition as `losses.ssim` (the reference and the CPU path): Gaussian window 11, sigma 1.5, 'valid'
windows only, the same small-image window rule, C1 = 0.01², C2 = 0.03². Written by hand because the
reference's two depthwise cuDNN convolutions over five stacked moment maps (plus the NHWC -> NCHW copies
around them) took 10 of a 16 ms training step at 1080x1920 on the H200, and the `fused-ssim` CUDA
extension must be compiled per host (no wheel for our torch/CUDA), takes NCHW images and has a fixed
11-tap window (no small-image rule). Triton comes with torch's CUDA builds.

An image [B, H, W, C] is read as B*H rows of W*C values: a horizontal tap moves C values along a row, a
vertical tap one row, so no layout change is needed.
  forward   1. horizontal blur of x, y, x², y², xy            -> 5 maps [B*H, Wo*C]
            2. vertical blur + SSIM map + per-tile sums        -> partial sums; with a gradient, the three
               derivatives dS/dmu_x, dS/dE[x²], dS/dE[xy] at each window [B*Ho, Wo*C]
  backward  3. transposed vertical blur of the three maps      -> [B*H, Wo*C]
            4. transposed horizontal blur + chain rule         -> dL/dx = scale * (t1 + 2x t2 + y t3)
Only the first image (the render) gets a gradient; the second (the photo) is a constant.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from splatforge.splat.losses import gauss_window_1d, ssim_window

C1, C2 = 0.01**2, 0.03**2
# Tiles (rows, values of a row) of the row-wise kernels 1 and 4 and the column-wise 2 and 3 (more rows, so
# fewer halo rows re-read), and warps per tile: 4 values a thread, ~60 registers on sm_90 (ptxas -v), no
# spills. Not tuned on a GPU yet (benchmarks/ssim_bench.py --tiles compares others).
ROW_TILE = (8, 128)
COLUMN_TILE = (16, 64)
NUM_WARPS = 8
# Sizes are not specialised on (Triton's default: a variant per divisibility by 16 and per size 1): one
# compile per kernel serves every resolution of the coarse-to-fine schedule.


@triton.jit(do_not_specialize=["n_rows", "row_in", "row_out", "plane", "C"])
def _ssim_moments_hblur(x_ptr, y_ptr, p_ptr, m_ptr, n_rows, row_in, row_out, plane, C,
                        WIN: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < row_out)
    src = rows[:, None].to(tl.int64) * row_in + cols[None, :]
    mx = tl.zeros([ROWS, BLOCK], dtype=tl.float32).to(m_ptr.dtype.element_ty)
    my, sxx, syy, sxy = mx, mx, mx, mx
    for k in range(WIN):  # a loop, not unrolled: unrolled, the hoisted loads spill registers
        w = tl.load(p_ptr + k)
        xv = tl.load(x_ptr + src + k * C, mask=mask, other=0.0)
        yv = tl.load(y_ptr + src + k * C, mask=mask, other=0.0)
        mx += w * xv
        my += w * yv
        sxx += w * xv * xv
        syy += w * yv * yv
        sxy += w * xv * yv
    dst = rows[:, None].to(tl.int64) * row_out + cols[None, :]
    tl.store(m_ptr + dst, mx, mask=mask)
    tl.store(m_ptr + plane + dst, my, mask=mask)
    tl.store(m_ptr + 2 * plane + dst, sxx, mask=mask)
    tl.store(m_ptr + 3 * plane + dst, syy, mask=mask)
    tl.store(m_ptr + 4 * plane + dst, sxy, mask=mask)


@triton.jit(do_not_specialize=["H", "Ho", "row", "plane_in", "plane_out"])
def _ssim_vblur(m_ptr, p_ptr, part_ptr, d_ptr, H, Ho, row, plane_in, plane_out,
                WIN: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr, WRITE_GRAD: tl.constexpr):
    pid_c, pid_r, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_r * ROWS + tl.arange(0, ROWS)  # output rows of image b
    cols = pid_c * BLOCK + tl.arange(0, BLOCK)
    mask = (rows[:, None] < Ho) & (cols[None, :] < row)
    src = (b * H + rows)[:, None].to(tl.int64) * row + cols[None, :]
    mx = tl.zeros([ROWS, BLOCK], dtype=tl.float32).to(m_ptr.dtype.element_ty)
    my, sxx, syy, sxy = mx, mx, mx, mx
    for k in range(WIN):
        w = tl.load(p_ptr + k)
        off = src + k * row
        mx += w * tl.load(m_ptr + off, mask=mask, other=0.0)
        my += w * tl.load(m_ptr + plane_in + off, mask=mask, other=0.0)
        sxx += w * tl.load(m_ptr + 2 * plane_in + off, mask=mask, other=0.0)
        syy += w * tl.load(m_ptr + 3 * plane_in + off, mask=mask, other=0.0)
        sxy += w * tl.load(m_ptr + 4 * plane_in + off, mask=mask, other=0.0)
    c1 = tl.load(p_ptr + WIN)  # constants in the images' dtype (a float literal would be float32)
    c2 = tl.load(p_ptr + WIN + 1)
    mx2, my2, mxy = mx * mx, my * my, mx * my
    num_l = 2 * mxy + c1
    num_c = 2 * (sxy - mxy) + c2
    den_l = mx2 + my2 + c1
    den_c = (sxx - mx2) + (syy - my2) + c2
    s = tl.where(mask, (num_l * num_c) / (den_l * den_c), 0.0)
    tile = (b * tl.num_programs(1) + pid_r) * tl.num_programs(0) + pid_c
    tl.store(part_ptr + tile, tl.sum(tl.sum(s, axis=1), axis=0))
    if WRITE_GRAD:
        dst = (b * Ho + rows)[:, None].to(tl.int64) * row + cols[None, :]
        d_mx = 2 * my * (num_c - num_l) / (den_l * den_c) - 2 * mx * s * (1 / den_l - 1 / den_c)
        tl.store(d_ptr + dst, d_mx, mask=mask)
        tl.store(d_ptr + plane_out + dst, -s / den_c, mask=mask)
        tl.store(d_ptr + 2 * plane_out + dst, 2 * num_l / (den_l * den_c), mask=mask)


@triton.jit(do_not_specialize=["H", "Ho", "row", "plane_in", "plane_out"])
def _ssim_vblur_t(d_ptr, p_ptr, t_ptr, H, Ho, row, plane_in, plane_out,
                  WIN: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid_c, pid_r, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_r * ROWS + tl.arange(0, ROWS)  # input rows of image b
    cols = pid_c * BLOCK + tl.arange(0, BLOCK)
    in_tile = (rows[:, None] < H) & (cols[None, :] < row)
    t1 = tl.zeros([ROWS, BLOCK], dtype=tl.float32).to(t_ptr.dtype.element_ty)
    t2, t3 = t1, t1
    for k in range(WIN):  # window rows (r - k) that cover row r
        w = tl.load(p_ptr + k)
        src_rows = rows - k
        valid = in_tile & (src_rows[:, None] >= 0) & (src_rows[:, None] < Ho)
        src = (b * Ho + src_rows)[:, None].to(tl.int64) * row + cols[None, :]
        t1 += w * tl.load(d_ptr + src, mask=valid, other=0.0)
        t2 += w * tl.load(d_ptr + plane_in + src, mask=valid, other=0.0)
        t3 += w * tl.load(d_ptr + 2 * plane_in + src, mask=valid, other=0.0)
    dst = (b * H + rows)[:, None].to(tl.int64) * row + cols[None, :]
    tl.store(t_ptr + dst, t1, mask=in_tile)
    tl.store(t_ptr + plane_out + dst, t2, mask=in_tile)
    tl.store(t_ptr + 2 * plane_out + dst, t3, mask=in_tile)


@triton.jit(do_not_specialize=["n_rows", "row_in", "row_t", "plane", "C"])
def _ssim_hblur_t_grad(t_ptr, p_ptr, x_ptr, y_ptr, scale_ptr, dx_ptr, n_rows, row_in, row_t, plane, C,
                       WIN: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_tile = (rows[:, None] < n_rows) & (cols[None, :] < row_in)
    t1 = tl.zeros([ROWS, BLOCK], dtype=tl.float32).to(dx_ptr.dtype.element_ty)
    t2, t3 = t1, t1
    for k in range(WIN):  # windows starting k pixels to the left (k*C values) cover this value
        w = tl.load(p_ptr + k)
        src_cols = cols - k * C
        valid = in_tile & (src_cols[None, :] >= 0) & (src_cols[None, :] < row_t)
        src = rows[:, None].to(tl.int64) * row_t + src_cols[None, :]
        t1 += w * tl.load(t_ptr + src, mask=valid, other=0.0)
        t2 += w * tl.load(t_ptr + plane + src, mask=valid, other=0.0)
        t3 += w * tl.load(t_ptr + 2 * plane + src, mask=valid, other=0.0)
    at = rows[:, None].to(tl.int64) * row_in + cols[None, :]
    xv = tl.load(x_ptr + at, mask=in_tile, other=0.0)
    yv = tl.load(y_ptr + at, mask=in_tile, other=0.0)
    tl.store(dx_ptr + at, tl.load(scale_ptr) * (t1 + 2 * xv * t2 + yv * t3), mask=in_tile)


@functools.lru_cache(maxsize=16)
def _params(window: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    """[g_0 .. g_{window-1}, C1, C2]: the reference's Gaussian taps and the constants, in the images' dtype."""
    consts = torch.tensor([C1, C2], dtype=torch.float64).to(device=device, dtype=dtype)
    return torch.cat([gauss_window_1d(window, sigma, device, dtype), consts])


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(f"fused SSIM needs two images [B, H, W, C] of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.dtype not in (torch.float32, torch.float64) or b.dtype != a.dtype or b.device != a.device:
        raise ValueError(f"fused SSIM needs float32 or float64 images on one device, got {a.dtype} on "
                         f"{a.device} and {b.dtype} on {b.device}")
    if min(a.shape) < 1:
        raise ValueError(f"fused SSIM got an empty image {tuple(a.shape)}")


@dataclass(frozen=True)
class _Layout:
    """A batch [B, H, W, C] read as B*H rows of W*C values, and its 'valid' windows: B*Ho rows of Wo*C."""

    batch: int
    height: int
    out_height: int
    row_in: int  # W*C
    row_out: int  # Wo*C
    channels: int
    window: int

    @staticmethod
    def of(x: torch.Tensor, window: int) -> _Layout:
        bsz, h, w, c = x.shape
        window = ssim_window(h, w, window)
        return _Layout(bsz, h, h - window + 1, w * c, (w - window + 1) * c, c, window)

    @property
    def windows(self) -> int:  # SSIM values averaged
        return self.batch * self.out_height * self.row_out


def _forward(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, need_grad: bool):
    """Mean SSIM (a 0-d tensor) and, when need_grad, the derivatives [3, B*Ho, Wo*C] (else None)."""
    lay = _Layout.of(x, window)
    params = _params(lay.window, sigma, str(x.device), x.dtype)
    rows, row = lay.batch * lay.height, lay.row_out
    moments = torch.empty((5, rows, row), device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(row, ROW_TILE[1]), triton.cdiv(rows, ROW_TILE[0]))
    _ssim_moments_hblur[grid](x, y, params, moments, rows, lay.row_in, row, rows * row, lay.channels,
                              WIN=lay.window, ROWS=ROW_TILE[0], BLOCK=ROW_TILE[1], num_warps=NUM_WARPS)
    grid = (triton.cdiv(row, COLUMN_TILE[1]), triton.cdiv(lay.out_height, COLUMN_TILE[0]), lay.batch)
    partials = torch.empty(grid[0] * grid[1] * grid[2], device=x.device, dtype=x.dtype)
    derivs = torch.empty((3, lay.batch * lay.out_height, row), device=x.device, dtype=x.dtype) if need_grad else None
    _ssim_vblur[grid](moments, params, partials, partials if derivs is None else derivs, lay.height,
                      lay.out_height, row, rows * row, lay.batch * lay.out_height * row,
                      WIN=lay.window, ROWS=COLUMN_TILE[0], BLOCK=COLUMN_TILE[1], WRITE_GRAD=need_grad,
                      num_warps=NUM_WARPS)
    return partials.sum() / lay.windows, derivs


def _backward(grad_value: torch.Tensor, x: torch.Tensor, y: torch.Tensor, derivs: torch.Tensor, window: int,
              sigma: float) -> torch.Tensor:
    lay = _Layout.of(x, window)
    params = _params(lay.window, sigma, str(x.device), x.dtype)
    rows, row = lay.batch * lay.height, lay.row_out
    scale = (grad_value / lay.windows).to(x.dtype).reshape(1)  # stays on the device: no sync
    spread = torch.empty((3, rows, row), device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(row, COLUMN_TILE[1]), triton.cdiv(lay.height, COLUMN_TILE[0]), lay.batch)
    _ssim_vblur_t[grid](derivs, params, spread, lay.height, lay.out_height, row,
                        lay.batch * lay.out_height * row, rows * row,
                        WIN=lay.window, ROWS=COLUMN_TILE[0], BLOCK=COLUMN_TILE[1], num_warps=NUM_WARPS)
    dx = torch.empty_like(x)
    grid = (triton.cdiv(lay.row_in, ROW_TILE[1]), triton.cdiv(rows, ROW_TILE[0]))
    _ssim_hblur_t_grad[grid](spread, params, x, y, scale, dx, rows, lay.row_in, row, rows * row, lay.channels,
                             WIN=lay.window, ROWS=ROW_TILE[0], BLOCK=ROW_TILE[1], num_warps=NUM_WARPS)
    return dx


def _on_device_of(x: torch.Tensor):
    """Triton launches on the current CUDA device: make it the images' one (cuda:1 while cuda:0 is current)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _FusedSSIM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, window, sigma):
        with _on_device_of(a):
            value, derivs = _forward(a, b, window, sigma, need_grad=True)
        ctx.save_for_backward(a, b, derivs)
        ctx.window, ctx.sigma = window, sigma
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_value):
        a, b, derivs = ctx.saved_tensors
        with _on_device_of(a):
            return _backward(grad_value, a, b, derivs, ctx.window, ctx.sigma), None, None, None


def fused_ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of images a, b [B, H, W, C] (float32 or float64, same device), as `losses.ssim`.

    Differentiable in `a` only; `b` is the fixed target (a gradient for it is not computed).
    """
    _check(a, b)
    if b.requires_grad and torch.is_grad_enabled():
        raise ValueError("fused SSIM gives no gradient for its second image; use losses.ssim for that")
    if not (a.requires_grad and torch.is_grad_enabled()):  # evaluation: no derivative maps written
        with _on_device_of(a):
            return _forward(a.contiguous(), b.contiguous(), int(window), float(sigma), need_grad=False)[0]
    return _FusedSSIM.apply(a.contiguous(), b.contiguous(), int(window), float(sigma))
