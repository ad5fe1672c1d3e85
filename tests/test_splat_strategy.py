"""Densification statistics: splatforge's sync-free update gives gsplat's numbers."""

from __future__ import annotations

import pytest
import torch
from gsplat.strategy import DefaultStrategy

from splatforge.splat.strategy import Densify3DGS


def _info(n_cams: int, n: int, seed: int, absgrad: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    means2d = torch.zeros(n_cams, n, 2, requires_grad=True)
    grad = torch.randn(n_cams, n, 2, generator=g)
    means2d.grad = grad
    if absgrad:
        means2d.absgrad = grad.abs() + 0.1
    radii = torch.randint(0, 4, (n_cams, n, 2), generator=g).float()  # 0 in either axis: not visible
    return {"width": 64, "height": 48, "n_cameras": n_cams, "radii": radii, "gaussian_ids": None,
            "means2d": means2d}


@pytest.mark.parametrize("absgrad", [False, True])
@pytest.mark.parametrize("n_cams", [1, 3])
def test_densification_statistics_equal_gsplats(absgrad, n_cams):
    n = 500
    params = {"means": torch.zeros(n, 3)}
    ours = Densify3DGS(absgrad=absgrad, refine_scale2d_stop_iter=100)
    theirs = DefaultStrategy(absgrad=absgrad, refine_scale2d_stop_iter=100)
    state_ours, state_theirs = ours.initialize_state(), theirs.initialize_state()
    largest = torch.zeros(n)
    for seed in range(3):  # accumulated over steps, the first one creating the state
        info = _info(n_cams, n, seed, absgrad)
        ours._update_state(params, state_ours, info)
        DefaultStrategy._update_state(theirs, params, state_theirs, info)
        visible = (info["radii"] > 0).all(-1)
        largest = torch.maximum(largest, (info["radii"].max(-1).values * visible).max(0).values / 64)
    for key in ("grad2d", "count"):
        assert torch.allclose(state_ours[key], state_theirs[key], atol=1e-5), key
    # The largest screen radius over cameras and steps. gsplat writes it with an indexed assignment, which
    # keeps an arbitrary camera's value where a Gaussian is seen by several ("should be ideally using scatter
    # max", its comment says); with one camera the two agree.
    assert torch.allclose(state_ours["radii"], largest)
    if n_cams == 1:
        assert torch.allclose(state_ours["radii"], state_theirs["radii"])
    assert 0 < state_ours["count"].min() < 3 * n_cams or (state_ours["count"] == 0).any()  # the masks mattered
