"""Hold-out metrics as gsplat's simple_trainer reports them: SSIM against torchmetrics, LPIPS absent and present.

No test downloads anything. The "present" LPIPS tests use a locally built AlexNet with RANDOM weights saved
where the real ImageNet file would be: they check the loading, the arithmetic (against torchmetrics' own
LPIPS module given the same backbone) and the plumbing, NOT the real network's values.
"""

from __future__ import annotations

import socket

import pytest
import torch

from splatforge.splat import lpips_files
from splatforge.splat.losses import ssim as loss_ssim
from splatforge.splat.metrics import holdout_psnr, holdout_ssim, make_lpips


def fixed_pair(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth scene and a shifted, noisier 'render' of it, [1, H, W, 3] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    scene = torch.stack([torch.sin(6 * xx) * 0.5 + 0.5, yy, xx * yy], -1)[None]
    photo = (scene + 0.08 * torch.randn(scene.shape, generator=g)).clamp(0, 1)
    render = (scene.roll(1, 2) + 0.05 * torch.randn(scene.shape, generator=g)).clamp(0, 1)
    return render, photo


@pytest.mark.parametrize("size", [(60, 80), (64, 64), (265, 353)])  # the demo's 80x60, a test capture, fern / 2
def test_holdout_ssim_is_torchmetrics_ssim(size):
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    render, photo = fixed_pair(*size)
    metric = StructuralSimilarityIndexMeasure(data_range=1.0)  # what gsplat's simple_trainer builds
    expected = float(metric(render.permute(0, 3, 1, 2), photo.permute(0, 3, 1, 2)))
    # float32 rounding of a separable vs a 2D convolution: ~2e-6; SSIM is reported to 4 decimals
    assert float(holdout_ssim(render, photo)) == pytest.approx(expected, abs=1e-5)
    assert 0.1 < expected < 0.9


def test_holdout_ssim_of_flat_images_is_the_closed_form():
    """Flat images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) whatever the window or padding."""
    a, b, c1 = 0.3, 0.5, 0.01**2
    render, photo = torch.full((1, 40, 50, 3), a), torch.full((1, 40, 50, 3), b)
    assert float(holdout_ssim(render, photo)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    assert float(holdout_ssim(photo, photo)) == pytest.approx(1.0, abs=1e-6)


def test_loss_ssim_is_not_the_reported_ssim_on_small_images():
    """The loss keeps its 'valid'-window SSIM (gsplat's loss does the same), which barely sees the border;
    the reported SSIM pads by reflection and counts every pixel, as papers' numbers do."""
    _, photo = fixed_pair(60, 80, seed=3)
    noise = torch.rand(photo.shape, generator=torch.Generator().manual_seed(1))
    frame = torch.ones(1, 60, 80, 1, dtype=torch.bool)
    frame[:, 4:-4, 4:-4] = False
    render = torch.where(frame, noise, photo)  # right inside, wrong on a 4-pixel frame
    assert float(loss_ssim(render, photo)) > 0.9  # seen: 0.913
    assert float(holdout_ssim(render, photo)) < 0.7  # seen: 0.676


def test_holdout_psnr_is_torchmetrics_psnr():
    from torchmetrics.image import PeakSignalNoiseRatio

    render, photo = fixed_pair(60, 80)
    expected = float(PeakSignalNoiseRatio(data_range=1.0)(render.permute(0, 3, 1, 2), photo.permute(0, 3, 1, 2)))
    assert float(holdout_psnr(render, photo)) == pytest.approx(expected, abs=1e-4)


# ------------------------------------------------------------------------------------------------- LPIPS


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (a download would be one)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache (TORCH_HOME) for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def random_alexnet_file(folder, seed: int = 0):
    """torchvision's AlexNet checkpoint layout (features.N.* and a classifier) with RANDOM weights."""
    from splatforge.splat.perceptual import alexnet_features

    torch.manual_seed(seed)
    feats = alexnet_features()
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # present in the real file, ignored by LPIPS
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / lpips_files.ALEXNET_FILE)
    return feats


def test_lpips_absent_says_how_to_enable_and_training_goes_on(hub, no_network):
    fn, note = make_lpips("cpu")
    assert fn is None
    assert str(hub) in note and lpips_files.ALEXNET_URL in note and "curl -L -o" in note and "to enable" in note
    assert "never downloaded" in note and "offline" in note
    assert not hub.exists()  # nothing was fetched or created


def test_lpips_truncated_or_corrupt_file_is_a_note_not_a_crash(hub, no_network):
    hub.mkdir(parents=True)
    (hub / lpips_files.ALEXNET_FILE).write_bytes(b"<html>proxy error</html>")
    fn, note = make_lpips("cpu")
    assert fn is None and "only 24 bytes" in note
    (hub / lpips_files.ALEXNET_FILE).write_bytes(bytes(lpips_files.MIN_BACKBONE_BYTES + 10))
    fn, note = make_lpips("cpu")
    assert fn is None and "could not be loaded" in note and lpips_files.ALEXNET_URL in note


def test_lpips_present_random_backbone_matches_torchmetrics_arithmetic(hub, no_network, monkeypatch):
    """NOT the real network: random AlexNet weights, real LPIPS v0.1 heads (from torchmetrics)."""
    import torchmetrics.functional.image.lpips as tm_lpips

    feats = random_alexnet_file(hub)
    fn, note = make_lpips("cpu")
    assert note is None and fn is not None
    render, photo = fixed_pair(64, 96)
    assert float(fn(photo, photo)) == 0.0
    ours = float(fn(render, photo))
    assert ours > 0

    # torchmetrics' LPIPS (what gsplat uses: net_type="alex", normalize=True), its torchvision backbone
    # replaced by the same random layers, since torchvision does not import beside this torch build.
    monkeypatch.setattr(tm_lpips, "_get_tv_model_features", lambda net, pretrained=False: feats)
    reference = tm_lpips._LPIPS(pretrained=True, net="alex")
    expected = float(reference(render.permute(0, 3, 1, 2), photo.permute(0, 3, 1, 2), normalize=True).mean())
    assert ours == pytest.approx(expected, rel=1e-5)


def test_lpips_files_follow_torch_hub_rules(tmp_path):
    import torch.hub

    assert lpips_files.torch_hub_checkpoints({"TORCH_HOME": "/x/t"}) == lpips_files.Path("/x/t/hub/checkpoints")
    assert lpips_files.torch_hub_checkpoints({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == \
        lpips_files.Path("/c/torch/hub/checkpoints")
    assert lpips_files.torch_hub_checkpoints({"HOME": "/h"}) == lpips_files.Path("/h/.cache/torch/hub/checkpoints")
    # and, for this process' environment, where torch itself would look
    assert lpips_files.torch_hub_checkpoints() == lpips_files.Path(torch.hub.get_dir()) / "checkpoints"
    assert lpips_files.lpips_heads() is not None  # torchmetrics ships them
