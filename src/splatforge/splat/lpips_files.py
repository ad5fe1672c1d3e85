"""Where LPIPS's two weight files are, and how to put the missing one there. No torch import (the doctor).

LPIPS(alex), the network gsplat's simple_trainer reports, is AlexNet's convolutional layers (ImageNet
weights, torchvision's file) followed by five 1x1 "linear" heads (the LPIPS v0.1 weights, which ship
inside torchmetrics). Nothing is ever downloaded at run time: the AlexNet file must already be in the
torch hub cache, the same place torchvision would have put it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1
ALEXNET_OLD_FILE = "alexnet-owt-4df8aa71.pth"  # the same weights under torchvision < 0.13's name
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
ALEXNET_MB = 233
# AlexNet's five conv layers hold 2.47 M float32 parameters (9.9 MB): a smaller file is not the weights.
MIN_BACKBONE_BYTES = 9_000_000


def torch_hub_checkpoints(env: Mapping[str, str] | None = None) -> Path:
    """torch's default hub checkpoint folder: $TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting to
    $XDG_CACHE_HOME/torch or ~/.cache/torch (torch.hub's rule, restated so the doctor needs no torch)."""
    env = os.environ if env is None else env
    torch_home = env.get("TORCH_HOME")
    if not torch_home:
        cache = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or str(Path.home()), ".cache")
        torch_home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def alexnet_weights(env: Mapping[str, str] | None = None) -> Path | None:
    """The local AlexNet ImageNet weights file, if any."""
    folder = torch_hub_checkpoints(env)
    for name in (ALEXNET_FILE, ALEXNET_OLD_FILE):
        if (folder / name).is_file():
            return folder / name
    return None


def lpips_heads() -> Path | None:
    """LPIPS v0.1 linear heads for AlexNet, as shipped inside the torchmetrics package."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "functional" / "image" / "lpips_models" / "alex.pth"
    return path if path.is_file() else None


def how_to_enable(env: Mapping[str, str] | None = None) -> str:
    """The exact commands that make LPIPS available (for reports, notes and the doctor)."""
    folder = torch_hub_checkpoints(env)
    return (f"mkdir -p {folder} && curl -L -o {folder / ALEXNET_FILE} {ALEXNET_URL}  "
            f"# {ALEXNET_MB} MB; offline: copy {ALEXNET_FILE} from the torch hub cache of a machine that has it "
            f"(any machine where torchvision loaded alexnet(weights='DEFAULT'))")


@dataclass(frozen=True)
class LpipsFiles:
    """What LPIPS needs on this machine: `problem` is None when both files are in place."""

    problem: str | None
    fix: str = ""  # the command that makes it available

    @property
    def note(self) -> str | None:
        """One line for train.json and the report: why LPIPS is missing and exactly how to enable it."""
        return None if self.problem is None else f"LPIPS not computed: {self.problem}; to enable: {self.fix}"


def check_files(env: Mapping[str, str] | None = None) -> LpipsFiles:
    if lpips_heads() is None:
        return LpipsFiles("torchmetrics (which ships the LPIPS heads) is not installed", "pip install torchmetrics")
    path = alexnet_weights(env)
    if path is None:
        return LpipsFiles(f"no AlexNet weights in {torch_hub_checkpoints(env)} (never downloaded during a run)",
                          how_to_enable(env))
    size = path.stat().st_size
    if size < MIN_BACKBONE_BYTES:
        return LpipsFiles(f"{path} is only {size:,} bytes (an interrupted download?)", how_to_enable(env))
    return LpipsFiles(None)
