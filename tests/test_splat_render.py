"""The pure-PyTorch reference rasteriser against gsplat's own PyTorch pieces (CPU) and gsplat's CUDA path (GPU)."""

from __future__ import annotations

import math

import pytest
import torch

from splatforge.splat.reference import eval_sh, project, rasterize_reference, sh_basis


def random_scene(n: int = 300, n_cam: int = 2, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.4  # well inside the view: no Jacobian clamping
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.08 + 0.01
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.randn(n, 16, 3, generator=g) * 0.3
    viewmats = torch.eye(4).repeat(n_cam, 1, 1)
    for c in range(n_cam):
        a = 0.1 * c
        viewmats[c, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        viewmats[c, :3, 3] = torch.tensor([0.1 * c, -0.05, 3.0])
    ks = torch.tensor([[70.0, 0, 31.5], [0, 72.0, 24.0], [0, 0, 1]]).repeat(n_cam, 1, 1)
    out = dict(means=means, quats=quats, scales=scales, opacities=opac, colors=colors, viewmats=viewmats, Ks=ks)
    return {k: v.to(device) for k, v in out.items()}


def test_projection_matches_gsplat_torch_impl():
    from gsplat.cuda import _torch_impl as ti

    s = random_scene()
    p = project(s["means"], s["quats"], s["scales"], s["opacities"], s["viewmats"], s["Ks"], 64, 48)
    covars, _ = ti._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = ti._fully_fused_projection(s["means"], covars, s["viewmats"], s["Ks"], 64, 48)
    both = (p["radii"] > 0).all(-1) & (radii > 0).all(-1)
    assert both.sum() > 100
    torch.testing.assert_close(p["means2d"][both], means2d[both], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(p["conics"][both], conics[both], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p["depths"], depths)
    # the reference's radius is opacity-aware (gsplat 1.5's CUDA kernel), so never larger than _torch_impl's 3.33 sigma
    assert (p["radii"][both] <= radii[both]).all()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat_torch_impl(degree):
    from gsplat.cuda import _torch_impl as ti

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(50, 3, generator=g)
    coeffs = torch.randn(50, 16, 3, generator=g)
    torch.testing.assert_close(eval_sh(degree, dirs, coeffs), ti._spherical_harmonics(degree, dirs, coeffs))
    assert sh_basis(degree, torch.nn.functional.normalize(dirs, dim=-1)).shape == (50, (degree + 1) ** 2)


def _dense_composite(means2d, conics, opac, feats, depths, radii, width, height):
    """Brute-force per-pixel loop over depth-sorted Gaussians: the compositing rule written plainly."""
    img = torch.zeros(height, width, feats.shape[-1], dtype=torch.float64)
    acc = torch.zeros(height, width, dtype=torch.float64)
    vis = torch.nonzero((radii > 0).all(-1)).squeeze(1)
    vis = vis[torch.argsort(depths[vis], stable=True)]
    for y in range(height):
        for x in range(width):
            t = 1.0
            for i in vis.tolist():
                dx, dy = means2d[i, 0] - (x + 0.5), means2d[i, 1] - (y + 0.5)
                c = conics[i]
                sigma = 0.5 * (c[0] * dx * dx + c[2] * dy * dy) + c[1] * dx * dy
                alpha = min(0.999, float(opac[i] * torch.exp(-sigma)))
                if sigma < 0 or alpha < 1 / 255:
                    continue
                if t * (1 - alpha) <= 1e-4:
                    break
                img[y, x] += alpha * t * feats[i].double()
                acc[y, x] += alpha * t
                t *= 1 - alpha
    return img, acc


def test_sparse_compositing_equals_brute_force_loop():
    s = random_scene(n=40, n_cam=1, seed=3)
    w, h = 20, 16
    ks = s["Ks"].clone()
    ks[:, 0, 0] = ks[:, 1, 1] = 25.0
    ks[:, 0, 2], ks[:, 1, 2] = 10.0, 8.0
    s["opacities"] = s["opacities"].clamp_min(0.6)  # saturate some pixels: exercises the 1e-4 stop
    img, alpha, info = rasterize_reference(s["means"], s["quats"], s["scales"] * 2, s["opacities"],
                                           s["colors"][:, 0, :], s["viewmats"], ks, w, h, sh_degree=None)
    ref_img, ref_acc = _dense_composite(info["means2d"][0].detach(), info["conics"][0].detach(),
                                        info["opacities"][0].detach(), s["colors"][:, 0, :], info["depths"][0].detach(),
                                        info["radii"][0], w, h)
    assert alpha.max() > 0.9
    torch.testing.assert_close(img[0].double(), ref_img, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha[0, ..., 0].double(), ref_acc, atol=1e-5, rtol=1e-4)


def test_reference_info_feeds_gsplat_strategies():
    """The info keys/shapes gsplat's DefaultStrategy reads, with a means2d gradient after backward."""
    from gsplat.strategy import DefaultStrategy

    from splatforge.splat.gaussians import PARAM_NAMES
    from splatforge.splat.render import render

    s = random_scene(n=200)
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
        "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1], "shN": s["colors"][:, 1:]})
    assert set(params) == set(PARAM_NAMES)
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=0.0)
    state = strategy.initialize_state(scene_scale=1.0)
    out = render(params, s["viewmats"], s["Ks"], 64, 48, sh_degree=3, backend="reference")
    info = out.info
    assert info["means2d"].shape == (2, 200, 2) and info["radii"].shape == (2, 200, 2)
    assert (info["width"], info["height"], info["n_cameras"]) == (64, 48, 2)
    strategy.step_pre_backward(params, opts, state, 1, info)
    out.image.mean().backward()
    assert info["means2d"].grad is not None and info["means2d"].grad.abs().sum() > 0
    n_before = len(params["means"])
    strategy.step_post_backward(params, opts, state, 1, info)
    assert len(params["means"]) > n_before  # every visible Gaussian had a gradient above 0: cloned or split


def test_cpu_relocation_matches_formula():
    """MCMC relocation's PyTorch port: n = 1 changes nothing; n copies composite back to the original opacity."""
    from gsplat.strategy import MCMCStrategy

    from splatforge.splat.strategy import relocation_torch

    binoms = MCMCStrategy().initialize_state()["binoms"]
    o = torch.tensor([0.3, 0.8, 0.95])
    s = torch.rand(3, 3) + 0.1
    new_o, new_s = relocation_torch(o, s, torch.ones(3), binoms)
    torch.testing.assert_close(new_o, o)
    torch.testing.assert_close(new_s, s)
    new_o, _ = relocation_torch(o, s, torch.tensor([2.0, 3.0, 5.0]), binoms)
    n = torch.tensor([2.0, 3.0, 5.0])
    torch.testing.assert_close(1 - (1 - new_o) ** n, o)  # n stacked copies have the old opacity


# --- GPU: reference vs gsplat ------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_reference_matches_gsplat_images_and_gradients(seed, mode):
    from splatforge.splat.render import render

    s = random_scene(n=500, n_cam=2, seed=seed, device="cuda")
    base = {"means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
            "opacities": torch.logit(s["opacities"]), "sh0": s["colors"][:, :1].contiguous(),
            "shN": s["colors"][:, 1:].contiguous()}
    results = {}
    for backend in ("gsplat", "reference"):
        params = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        out = render(params, s["viewmats"], s["Ks"], 64, 48, sh_degree=3, backend=backend, rasterize_mode=mode)
        out.info["means2d"].retain_grad()
        target = torch.rand(out.image.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        ((out.image - target) ** 2).mean().backward()
        results[backend] = (out, params)
    (g_out, g_params), (r_out, r_params) = results["gsplat"], results["reference"]
    assert g_out.image.abs().max() > 0.1
    # float32 transmittance (gsplat) vs float64 (reference) may stop a pixel one Gaussian apart: ~1e-4
    torch.testing.assert_close(r_out.image, g_out.image, atol=5e-4, rtol=1e-3)
    torch.testing.assert_close(r_out.alpha, g_out.alpha, atol=5e-4, rtol=1e-3)
    vis_r, vis_g = (r_out.info["radii"] > 0).all(-1), (g_out.info["radii"] > 0).all(-1)
    assert (vis_r != vis_g).sum() <= 2 and vis_g.sum() > 500
    grads = {k: (g_params[k].grad, r_params[k].grad) for k in base}
    grads["means2d"] = (g_out.info["means2d"].grad, r_out.info["means2d"].grad)
    for k, (g, r) in grads.items():
        assert g.abs().max() > 0, f"no gradient for {k}"
        assert ((g - r).abs().max() / g.abs().max()) < 5e-3, f"gradient of {k} differs (max)"
        assert ((g - r).abs().mean() / g.abs().mean()) < 1e-3, f"gradient of {k} differs (mean)"
