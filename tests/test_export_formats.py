"""Export formats: each one written and read back (through a reader other than its writer where one
exists), its quantisation errors measured and bounded; the export stage, `export_to` and the CLI.

Errors measured on the synthetic splat below (2,000 Gaussians on a jittered 0.1 grid, scales e^-6..e^-3,
opacities 0.05..0.98, SH from a palette of 32; splat-transform 3.7.0, gsplat 1.5.3):

| format         | position | colour  | opacity | log scale | rotation | SH     |
|----------------|----------|---------|---------|-----------|----------|--------|
| ply            | 0        | 0       | 0       | 0         | 0        | 0      |
| ply-compressed | 0.00068  | 0.0018  | 0.0020  | 0.0015    | 0.18 deg | 0.016  |
| splat          | 0        | 0.0039  | 0.0039  | 0         | 0.82 deg | (none) |
| spz            | 0.00020  | 0.0037  | 0.0020  | 0.031     | 0.22 deg | 0.066  |
| sog            | 0.00003  | 0.0023  | 0.0039  | 0.0077    | 1.50 deg | 0.011  |

The bounds follow from each layout: 8 bits for colour and opacity (<= 1/255 with truncation), SPZ's
log scale in steps of 1/16 and its SH in 4-5 bits, the compressed PLY's SH in steps of 8/256, 8-10 bit
quaternion components (.splat: 8 bits each).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from splatforge.errors import InputError
from splatforge.rundir import RunDir
from splatforge.splat.checkpoint import save_checkpoint
from splatforge.splat.formats import (
    FORMATS,
    format_for_path,
    format_named,
    read_splat,
    sniff_format,
    write_splat,
)
from splatforge.splat.formats import splat_transform as st

N = 2000
HAVE_SPLAT_TRANSFORM = (st.node_modules_dir() / st.PACKAGE / "bin" / "cli.mjs").is_file() and bool(st.find_node())
needs_node = pytest.mark.skipif(not HAVE_SPLAT_TRANSFORM,
                                reason="Node.js or the npm package @playcanvas/splat-transform is missing (./setup.sh)")

# format -> bounds: position, colour (0..1), opacity (0..1), log scale, rotation (degrees), SH coefficient
BOUNDS = {
    "ply": dict(pos=0.0, rgb=0.0, opacity=0.0, log_scale=0.0, rot_deg=1e-3, sh=0.0),
    "ply-compressed": dict(pos=1.5e-3, rgb=1 / 255 + 1e-4, opacity=1 / 255 + 1e-4, log_scale=4e-3, rot_deg=0.3,
                           sh=8 / 256 + 1e-4),
    "splat": dict(pos=0.0, rgb=1 / 255 + 1e-4, opacity=1 / 255 + 1e-4, log_scale=1e-6, rot_deg=1.2, sh=None),
    "spz": dict(pos=2.5e-4, rgb=0.006, opacity=1 / 255 + 1e-4, log_scale=1 / 32 + 1e-4, rot_deg=0.35, sh=0.07),
    "sog": dict(pos=1e-4, rgb=0.005, opacity=1 / 255 + 1e-4, log_scale=0.02, rot_deg=2.0, sh=0.03),
}


def synthetic_splat(n: int = N, seed: int = 0) -> dict[str, torch.Tensor]:
    """Gaussians far enough apart (0.1 grid, 0.03 jitter) to be matched back after reordering."""
    g = torch.Generator().manual_seed(seed)
    side = math.ceil(n ** (1 / 3))
    idx = torch.arange(n)
    grid = torch.stack([idx % side, (idx // side) % side, idx // side // side], 1).float()
    palette = torch.randn(32, 15, 3, generator=g) * 0.15
    return {
        "means": (grid - side / 2) * 0.1 + (torch.rand(n, 3, generator=g) - 0.5) * 0.03,
        "scales": torch.rand(n, 3, generator=g) * 3 - 6,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.rand(n, generator=g) * 7 - 3,
        "sh0": (torch.rand(n, 1, 3, generator=g) - 0.5) / 0.28209479177387814 * 0.9,
        "shN": palette[torch.randint(0, 32, (n,), generator=g)] + torch.randn(n, 15, 3, generator=g) * 0.003,
    }


def errors(orig: dict[str, torch.Tensor], back: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """Largest error per attribute, each decoded Gaussian compared with the original nearest to it."""
    dist = torch.cdist(back["means"].double(), orig["means"].double(), compute_mode="donot_use_mm_for_euclid_dist")
    nearest, index = dist.min(1)
    ref = {k: v[index] for k, v in orig.items()}
    qa = torch.nn.functional.normalize(ref["quats"].double(), dim=1)
    qb = torch.nn.functional.normalize(back["quats"].double(), dim=1)
    # the angle between two unit quaternions, stable near zero (acos is not)
    half = torch.atan2(torch.linalg.norm(qa - qb * torch.sign((qa * qb).sum(1, keepdim=True)), dim=1),
                       torch.linalg.norm(qa + qb * torch.sign((qa * qb).sum(1, keepdim=True)), dim=1))
    rgb = lambda sh: sh[:, 0].double() * 0.28209479177387814 + 0.5  # noqa: E731
    k = back["shN"].shape[1]
    return {
        "matched": len(set(index.tolist())) / len(orig["means"]),
        "pos": float(nearest.max()),
        "rgb": float((rgb(ref["sh0"]) - rgb(back["sh0"])).abs().max()),
        "opacity": float((torch.sigmoid(ref["opacities"].double()) - torch.sigmoid(back["opacities"].double()))
                         .abs().max()),
        "log_scale": float((ref["scales"].double() - back["scales"].double()).abs().max()),
        "rot_deg": float(torch.rad2deg(4 * half).max()),
        "sh": float((ref["shN"][:, :k].double() - back["shN"].double()).abs().max()) if k else None,
    }


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory):
    """Every format written once and read back: {format: (path, decoded params)}."""
    folder = tmp_path_factory.mktemp("formats")
    params = synthetic_splat()
    out = {}
    for fmt in FORMATS.values():
        if fmt.name != "ply" and not HAVE_SPLAT_TRANSFORM:
            continue  # decoding these needs splat-transform
        path = write_splat(params, folder / f"scene{fmt.suffix}")
        out[fmt.name] = (path, read_splat(path))
    return params, out


@needs_node
@pytest.mark.parametrize("name", list(FORMATS))
def test_round_trip_within_the_format_quantisation(round_trips, name):
    params, trips = round_trips
    path, back = trips[name]
    assert sniff_format(path).name == name
    assert len(back["means"]) == N  # every opacity is above the 1/255 the compressed PLY drops
    err = errors(params, back)
    assert err["matched"] == 1.0, "two decoded Gaussians matched the same original: positions moved too far"
    bound = BOUNDS[name]
    for key in ("pos", "rgb", "opacity", "log_scale", "rot_deg"):
        assert err[key] <= bound[key], (name, key, err[key], bound[key])
    if bound["sh"] is None:
        assert back["shN"].shape[1] == 0  # .splat keeps the base colour only
    else:
        assert back["shN"].shape[1] == 15 and err["sh"] <= bound["sh"], (name, err["sh"])


@needs_node
def test_compact_formats_are_smaller(round_trips):
    _params, trips = round_trips
    size = {name: path.stat().st_size for name, (path, _) in trips.items()}
    assert size["ply"] == pytest.approx(N * 62 * 4, rel=0.01)
    assert size["splat"] == N * 32  # antimatter15: 32 bytes a Gaussian, nothing else
    for name in ("ply-compressed", "splat", "spz", "sog"):
        assert size[name] < size["ply"] / 3, (name, size)


def test_the_ply_round_trip_is_exact_without_node(tmp_path):
    params = synthetic_splat(300)
    back = read_splat(write_splat(params, tmp_path / "a.ply"))
    for key in params:
        torch.testing.assert_close(back[key], params[key], rtol=0, atol=0)


@needs_node
def test_sh_degree_limit(tmp_path):
    params = synthetic_splat(300)
    for degree, bases in ((0, 0), (1, 3), (2, 8)):
        back = read_splat(write_splat(params, tmp_path / f"d{degree}.spz", sh_degree=degree))
        assert back["shN"].shape[1] == bases
    assert read_splat(write_splat(params, tmp_path / "d1.ply", sh_degree=1))["shN"].shape[1] == 3


def test_format_names_and_endings(tmp_path):
    assert format_for_path(tmp_path / "x.compressed.ply").name == "ply-compressed"
    assert format_for_path(tmp_path / "X.PLY").name == "ply"
    assert format_for_path(tmp_path / "x.sog").name == "sog"
    assert format_named("ply_compressed").name == "ply-compressed"
    with pytest.raises(InputError) as err:
        format_for_path(tmp_path / "x.ksplat")
    assert all(f.suffix in err.value.advice for f in FORMATS.values())
    with pytest.raises(InputError, match="unknown splat format"):
        format_named("obj")
    (tmp_path / "n.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nend_header\n")
    assert sniff_format(tmp_path / "n.ply").name == "ply"
    (tmp_path / "q.dat").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a splat file"):
        sniff_format(tmp_path / "q.dat")


def test_missing_node_or_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(st, "find_node", lambda: None)
    with pytest.raises(InputError) as err:
        write_splat(synthetic_splat(50), tmp_path / "x.sog")
    assert "Node.js" in err.value.message and "./setup.sh" in err.value.advice
    assert not list(tmp_path.iterdir())  # nothing half-written
    monkeypatch.undo()
    monkeypatch.setattr(st, "node_modules_dir", lambda: tmp_path / "nowhere")
    if st.find_node():
        with pytest.raises(InputError, match="@playcanvas/splat-transform"):
            write_splat(synthetic_splat(50), tmp_path / "x.spz")


# --- the export stage and the CLI -------------------------------------------------------------------


def trained_run(tmp_path, n: int = 400) -> RunDir:
    """A run folder whose newest checkpoint holds `synthetic_splat(n)` (what training leaves)."""
    run = RunDir(tmp_path / "run").create()
    save_checkpoint(run.checkpoints, 7, {"params": synthetic_splat(n), "step": 7})
    return run


def test_export_options_validate():
    from splatforge.splat.export import ExportOptions

    assert ExportOptions().formats == ("ply", "spz")
    assert ExportOptions(formats=("ply_compressed", "ply", "ply-compressed")).formats == ("ply-compressed", "ply")
    with pytest.raises(InputError, match="unknown splat format"):
        ExportOptions(formats=("ply", "fbx"))
    with pytest.raises(InputError, match="SH degree"):
        ExportOptions(sh_degree=4)
    with pytest.raises(InputError):
        ExportOptions(formats=())


@needs_node
def test_export_stage_writes_each_format_and_drops_stale_ones(tmp_path):
    import os

    from splatforge.splat.export import ExportOptions, export_done, export_splat

    run = trained_run(tmp_path)
    run.export_dir.mkdir(parents=True)
    run.splat.write_bytes(b"from an older checkpoint")
    old = next(run.checkpoints.iterdir()).stat().st_mtime - 100
    os.utime(run.splat, (old, old))
    summary = export_splat(run, ExportOptions(formats=("ply", "spz"), sh_degree=1))
    assert set(summary["files"]) == {"ply", "spz"} and summary["step"] == 7 and summary["num_gaussians"] == 400
    assert summary["removed"] == [str(run.splat)] and not run.splat.exists()
    for name, item in summary["files"].items():
        assert item["path"] == str(run.export_file(name)) and item["bytes"] == run.export_file(name).stat().st_size
        assert item["sh_degree"] == 1 and item["seconds"] >= 0
    assert summary["ply"] == str(run.ply) and read_splat(run.spz)["shN"].shape[1] == 3
    json.dumps(summary)
    assert export_done(run, ExportOptions(formats=("ply", "spz"))) and not export_done(run, ExportOptions(formats=("sog",)))
    newer = run.ply.stat().st_mtime + 10
    os.utime(next(run.checkpoints.iterdir()), (newer, newer))  # trained on after the export
    assert not export_done(run, ExportOptions(formats=("ply", "spz")))


def test_export_stage_without_node_writes_the_ply_and_says_what_it_skipped(tmp_path, monkeypatch):
    from splatforge.splat import export
    from splatforge.splat.stages import EXPORT
    from splatforge.stage import run_stage

    monkeypatch.setattr(export.splat_transform, "find_node", lambda: None)
    run = trained_run(tmp_path)
    summary = run_stage(EXPORT, run)
    assert set(summary["files"]) == {"ply"} and "Node.js" in summary["skipped"]["spz"]
    assert run.ply.is_file() and not run.spz.exists()
    assert EXPORT.done(run)  # done means: what this export wrote is there and current


def test_export_to_picks_the_format_from_the_name(tmp_path):
    from splatforge.splat.export import export_to

    run = trained_run(tmp_path)
    item = export_to(run, tmp_path / "out.splat")
    data = (tmp_path / "out.splat").read_bytes()
    assert item["format"] == "splat" and len(data) == 400 * 32 and not data.startswith(b"ply")
    with pytest.raises(InputError, match="does not say which splat format"):
        export_to(run, tmp_path / "out.xyz")
    with pytest.raises(InputError, match="does not end with .spz"):
        export_to(run, tmp_path / "out.ply", format="spz")
    assert not (tmp_path / "out.ply").exists()
    with pytest.raises(InputError, match="no checkpoint"):
        export_to(RunDir(tmp_path / "empty"), tmp_path / "e.ply")


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from splatforge.cli import app

    run = trained_run(tmp_path)
    cli = CliRunner()
    res = cli.invoke(app, ["export", str(run.root), "-o", str(tmp_path / "x.compressed.ply"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"]["ply-compressed"]["bytes"] > 0
    assert b"element chunk" in (tmp_path / "x.compressed.ply").read_bytes()[:2000]
    res = cli.invoke(app, ["export", str(run.root), "-o", str(tmp_path / "x.obj"), "--json"])
    assert res.exit_code != 0 and ".sog" in json.loads(res.stdout)["advice"]
    res = cli.invoke(app, ["export", str(run.root), "--format", "ply", "--sh-degree", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert read_splat(run.ply)["shN"].shape[1] == 0
    manifest = json.loads(run.manifest.read_text())
    assert manifest["stages"]["export"]["status"] == "done"
    assert manifest["stages"]["export"]["summary"]["files"]["ply"]["sh_degree"] == 0


def test_the_service_offers_each_exported_format(tmp_path):
    pytest.importorskip("fastapi")
    from splatforge.service.app import ARTIFACTS, _artifacts

    run = RunDir(tmp_path / "run")
    for fmt in FORMATS.values():
        assert f"scene{fmt.suffix}" in ARTIFACTS
        attr, media_type = ARTIFACTS[f"scene{fmt.suffix}"]
        assert getattr(run, attr) == run.export_file(fmt.name) and media_type == fmt.media_type
    assert _artifacts("j", run) == {}
    run.export_dir.mkdir(parents=True)
    run.sog.write_bytes(b"PK\x03\x04")
    assert _artifacts("j", run) == {"scene.sog": "/v1/jobs/j/artifacts/scene.sog",
                                    "cameras.json": "/v1/jobs/j/artifacts/cameras.json"}
