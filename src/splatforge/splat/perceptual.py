"""LPIPS(alex) without torchvision: the AlexNet feature layers built here, weights read from local files.

Why by hand: torchmetrics' (and the `lpips` package's) LPIPS take AlexNet from torchvision, and
torchvision wheels are tied to one torch build (PyPI's torchvision does not import beside the CPU
torch 2.13 wheel this project installs). The backbone is five convolutions; what makes it LPIPS is
the weights, which come from the same files torchmetrics would load: torchvision's AlexNet ImageNet
checkpoint and torchmetrics' LPIPS v0.1 heads. The arithmetic follows torchmetrics'
`LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)` (gsplat simple_trainer's
metric); a CPU test checks it against torchmetrics' own module given the same backbone weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# LPIPS's input scaling (constants of the metric, ImageNet statistics mapped to [-1, 1] inputs).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# AlexNet's feature layers up to the fifth ReLU (torchvision's `alexnet().features[:12]`, same indices, so
# the checkpoint's `features.N.*` keys load as they are), and where LPIPS taps them (after each ReLU).
_CHANNELS = (64, 192, 384, 256, 256)
_TAPS = (1, 4, 7, 9, 11)


def alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )


class AlexLpips(nn.Module):
    """LPIPS distance between images [B, 3, H, W] in [0, 1] -> [B] (0 for identical images)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, backbone: Path, heads: Path) -> AlexLpips:
        """Backbone: torchvision's AlexNet checkpoint (`features.N.weight` keys; a features-only file with
        `N.weight` keys works too). Heads: torchmetrics' `lpips_models/alex.pth` (`linK.model.1.weight`)."""
        net = cls()
        state = torch.load(backbone, map_location="cpu", weights_only=True, mmap=True)
        feats = {k.removeprefix("features."): v for k, v in state.items()
                 if k.startswith("features.") or k.split(".")[0].isdigit()}
        net.features.load_state_dict({k: v for k, v in feats.items() if int(k.split(".")[0]) < len(net.features)})
        head_state = torch.load(heads, map_location="cpu", weights_only=True)
        net.heads.load_state_dict({f"{k}.weight": head_state[f"lin{k}.model.1.weight"] for k in range(len(_CHANNELS))})
        return net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b]) * 2 - 1  # [0, 1] -> [-1, 1], both images in one pass
        x = (x - self.shift) / self.scale
        total = torch.zeros(len(a), device=a.device, dtype=a.dtype)
        start = 0
        for tap, head in zip(_TAPS, self.heads):
            x = self.features[start: tap + 1](x)
            start = tap + 1
            fa, fb = _unit_channels(x).split(len(a))
            total = total + head((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total


def _unit_channels(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x / torch.sqrt(eps + (x * x).sum(dim=1, keepdim=True))
