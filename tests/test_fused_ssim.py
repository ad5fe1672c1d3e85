"""The Triton SSIM (splat/fused_ssim.py) against the reference `losses.ssim`: values and gradients.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here before the module is
imported) on CPU tensors; with one, the same tests run compiled on CUDA, plus a 1080x1920 comparison.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (it comes with torch's CUDA builds)", allow_module_level=True)
CUDA = torch.cuda.is_available()
if not CUDA:  # read when Triton's own and our kernels are decorated: before triton is first imported
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set (run with it set)",
                    allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"

from splatforge.splat import losses  # noqa: E402
from splatforge.splat.fused_ssim import fused_ssim  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
ROOT = Path(__file__).resolve().parents[1]


def image_pair(shape, dtype, seed=0, device=DEVICE):
    """A smooth image with noise (render-like) and a perturbed copy (the photo), both in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    b, h, w, c = shape
    coarse = torch.rand((b, c, max(h // 4, 1), max(w // 4, 1)), generator=gen, dtype=torch.float64)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear").permute(0, 2, 3, 1)
    render = (smooth + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    photo = (0.8 * render + 0.2 * torch.rand(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return render.to(device, dtype).contiguous(), photo.to(device, dtype).contiguous()


def value_and_grad(fn, a, b):
    a = a.detach().clone().requires_grad_(True)
    value = fn(a, b)
    value.backward()
    return value.detach(), a.grad


def reference(a, b, window=11):
    """losses.ssim with the fused path switched off (it is only ever taken for CUDA float32 images)."""
    with mock.patch.dict(os.environ, {"SPLATFORGE_FUSED_SSIM": "0"}):
        return losses.ssim(a, b, window)


# (B, H, W, C): even and odd sizes, one or two images, 1 or 3 channels, and images smaller than the
# window (the reference then uses the largest odd window that fits: 7, 5, 1).
SHAPES = [(1, 16, 20, 3), (2, 13, 17, 3), (1, 7, 9, 3), (2, 12, 5, 3), (2, 1, 6, 3), (1, 21, 12, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float64_value_and_gradient_match_reference(shape):
    a, b = image_pair(shape, torch.float64)
    v, g = value_and_grad(fused_ssim, a, b)
    v_ref, g_ref = value_and_grad(reference, a, b)
    assert 0.0 < float(v_ref) < 1.0
    assert abs(float(v) - float(v_ref)) < 1e-12
    assert g.shape == a.shape and g.is_contiguous()
    assert float(g_ref.abs().max()) > 0
    assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-12 * float(g_ref.abs().max()))


def test_many_small_tiles_give_the_same_result(monkeypatch):
    """Tiles much smaller than the image: halos, ragged edges and partial sums across tiles and images."""
    from splatforge.splat import fused_ssim as module

    a, b = image_pair((2, 19, 14, 3), torch.float64, seed=6)
    v_ref, g_ref = value_and_grad(reference, a, b)
    monkeypatch.setattr(module, "ROW_TILE", (4, 16))
    monkeypatch.setattr(module, "COLUMN_TILE", (4, 8))
    monkeypatch.setattr(module, "NUM_WARPS", 1)
    v, g = value_and_grad(fused_ssim, a, b)
    assert abs(float(v) - float(v_ref)) < 1e-12
    assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-12 * float(g_ref.abs().max()))


def test_batch_of_two_is_the_mean_of_each_image():
    a, b = image_pair((2, 14, 19, 3), torch.float64, seed=3)
    v, g = value_and_grad(fused_ssim, a, b)
    (v0, g0), (v1, g1) = (value_and_grad(fused_ssim, a[i:i + 1], b[i:i + 1]) for i in range(2))
    assert abs(float(v0) - float(v1)) > 1e-3  # the two images really differ
    assert float(v) == pytest.approx((float(v0) + float(v1)) / 2, abs=1e-13)
    assert torch.allclose(g, torch.cat([g0, g1]) / 2, rtol=1e-9, atol=1e-15)


def test_float32_matches_reference_tightly():
    a, b = image_pair((2, 24, 31, 3), torch.float32, seed=1)
    v, g = value_and_grad(fused_ssim, a, b)
    v_ref, g_ref = value_and_grad(reference, a.double(), b.double())
    assert v.dtype == torch.float32 and g.dtype == torch.float32
    assert abs(float(v) - float(v_ref)) < 1e-6
    assert float((g.double() - g_ref).abs().max()) < 1e-4 * float(g_ref.abs().max())


def test_gradcheck_against_finite_differences():
    a, b = image_pair((1, 9, 10, 2), torch.float64, seed=2)  # window 9: every pixel in several windows
    a.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: fused_ssim(x, b), (a,), fast_mode=True)


def test_identical_images_give_one_and_a_zero_gradient():
    a, _ = image_pair((1, 15, 15, 3), torch.float64, seed=4)
    v, g = value_and_grad(fused_ssim, a, a.clone())
    assert float(v) == pytest.approx(1.0, abs=1e-12)
    assert float(g.abs().max()) < 1e-12


def test_channel_last_views_and_no_grad():
    """The trainer's coarse targets are NCHW tensors viewed as NHWC: not contiguous."""
    a, b = image_pair((1, 13, 18, 3), torch.float64, seed=5)
    b_view = b.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    assert not b_view.is_contiguous()
    v, g = value_and_grad(fused_ssim, a, b_view)
    v_ref, g_ref = value_and_grad(reference, a, b)
    assert abs(float(v) - float(v_ref)) < 1e-12
    assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-15)
    with torch.no_grad():
        assert float(fused_ssim(a.requires_grad_(True), b)) == pytest.approx(float(v_ref), abs=1e-12)


def test_refuses_what_it_cannot_do():
    a, b = image_pair((1, 12, 12, 3), torch.float64)
    with pytest.raises(ValueError, match="one shape"):
        fused_ssim(a, b[:, :11])
    with pytest.raises(ValueError, match="float32 or float64"):
        fused_ssim(a.half(), b.half())
    with pytest.raises(ValueError, match="second image"):
        fused_ssim(a, b.clone().requires_grad_(True))


def test_kernels_compile_for_h100_without_register_spills():
    """The interpreter runs any Python; this lowers the kernels for sm_90 as the GPU will (in a fresh process)."""
    if CUDA:
        pytest.skip("the other tests compile and run the kernels on this GPU")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9 warns while it is unset; 1 is its default
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fused_ssim_compile.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip()[-300:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 10, proc.stdout  # 5 kernel variants x float32, float64
    assert all(line.endswith("spill_bytes=0") for line in lines), proc.stdout
    assert all(int(line.split("registers=")[1].split()[0]) <= 128 for line in lines if " fp32 " in line), proc.stdout


def test_reference_stays_on_cpu_tensors(monkeypatch):
    """losses.ssim never takes the Triton path for CPU tensors (the CPU trainer keeps cuDNN-free convs)."""
    monkeypatch.setattr(losses, "_fused_ssim", lambda: pytest.fail("fused SSIM called for CPU tensors"))
    a, b = image_pair((1, 12, 12, 3), torch.float32, device="cpu")
    assert 0 < float(losses.ssim(a, b)) < 1


@pytest.mark.gpu
def test_gpu_dispatch_switch_and_fallback(monkeypatch):
    a, b = image_pair((1, 40, 50, 3), torch.float32)
    calls = []
    monkeypatch.setattr(losses, "_fused_ssim", lambda: lambda *args: calls.append(1) or fused_ssim(*args))
    losses.ssim(a, b)
    assert calls == [1]
    monkeypatch.setenv("SPLATFORGE_FUSED_SSIM", "0")
    losses.ssim(a, b)
    assert calls == [1]
    monkeypatch.delenv("SPLATFORGE_FUSED_SSIM")
    # A gradient wanted for the photo too: the reference computes it.
    b_grad = b.clone().requires_grad_(True)
    losses.ssim(a, b_grad).backward()
    assert b_grad.grad is not None

    def broken(*args):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(losses, "_fused_ssim", lambda: broken)
    monkeypatch.setattr(losses, "_fused_failed", [])
    with pytest.warns(UserWarning, match="fused SSIM unavailable"):
        v = losses.ssim(a, b)
    assert float(v) == pytest.approx(float(reference(a, b)), abs=1e-6)


def _ms_per_step(fn, a, b, repeats=30):
    a = a.detach().clone().requires_grad_(True)
    for _ in range(5):
        fn(a, b).backward()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a.grad = None
        fn(a, b).backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


@pytest.mark.gpu
def test_gpu_full_hd_matches_and_is_faster():
    """1080x1920 (fox): float32 fused vs the float64 reference; forward+backward time vs the cuDNN one."""
    a, b = image_pair((1, 1080, 1920, 3), torch.float32, seed=7)
    v, g = value_and_grad(fused_ssim, a, b)
    v64, g64 = value_and_grad(reference, a.double(), b.double())
    assert abs(float(v) - float(v64)) < 1e-5
    assert float((g.double() - g64).abs().max()) < 1e-3 * float(g64.abs().max())
    fused_ms = _ms_per_step(fused_ssim, a, b)
    reference_ms = _ms_per_step(reference, a, b)
    print(f"SSIM forward+backward at 1080x1920 on {torch.cuda.get_device_name()}: fused {fused_ms:.2f} ms, "
          f"reference {reference_ms:.2f} ms")
    assert fused_ms < reference_ms / 2
