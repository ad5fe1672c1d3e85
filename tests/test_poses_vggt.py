"""VGGT engine: the unit conversions, proved with a STAND-IN for the `vggt` package.

The real VGGT model is NOT run here (no weights, no GPU). `_write_standin` writes a tiny package named
`vggt` that answers VGGT's interface (`VGGT.from_pretrained`, `model(images)` -> pose_enc / depth /
depth_conf, `pose_encoding_to_extri_intri`) with predictions computed from a synthetic scene's TRUE
cameras, at the network resolution, using VGGT's documented pad-mode preprocessing (re-implemented
independently here). If splatforge converts back to the original images correctly, it recovers the
true cameras exactly and puts the depth points on the true surface (the plane z = 0).
"""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from splatforge.scene.conventions import look_at_w2c

STANDIN_MODEL = '''
"""STAND-IN for facebookresearch/vggt, for tests only: predictions from the true cameras in $VGGT_STANDIN_TRUTH."""
import json, os
import numpy as np
import torch

TARGET = 518

def _geometry(w, h):  # VGGT load_and_preprocess_images(mode="pad")
    if w >= h:
        nw, nh = TARGET, round(h * TARGET / w / 14) * 14
    else:
        nh, nw = TARGET, round(w * TARGET / h / 14) * 14
    return nw / w, nh / h, (TARGET - nw) // 2, (TARGET - nh) // 2, nw, nh

def _quat_xyzw(r):
    w = np.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return [x, y, z, w]

class VGGT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        with open(os.environ["VGGT_STANDIN_TRUTH"]) as f:
            self.truth = json.load(f)

    @classmethod
    def from_pretrained(cls, name):
        return cls()

    def forward(self, images):
        if images.dim() == 4:
            images = images[None]
        _, s, _, hh, ww = images.shape
        assert (hh, ww) == (TARGET, TARGET) and s == len(self.truth)
        enc, depth, conf = [], np.zeros((s, hh, ww)), np.zeros((s, hh, ww))
        v, u = np.mgrid[0:hh, 0:ww] + 0.5
        for i, cam in enumerate(self.truth):
            sx, sy, pl, pt, nw, nh = _geometry(cam["width"], cam["height"])
            fx, fy = cam["fx"] * sx, cam["fy"] * sy
            cx, cy = cam["cx"] * sx + pl, cam["cy"] * sy + pt
            w2c = np.array(cam["w2c"])
            enc.append([*w2c[:3, 3], *_quat_xyzw(w2c[:3, :3]),
                        2 * np.arctan(hh / 2 / fy), 2 * np.arctan(ww / 2 / fx)])
            rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1) @ w2c[:3, :3]  # world dirs
            centre = -w2c[:3, :3].T @ w2c[:3, 3]
            t = -centre[2] / rays[..., 2]  # hit the plane z = 0; t is the z-depth since ray z_cam = 1
            depth[i] = np.where(t > 0, t, 0)
            conf[i, pt:pt + nh, pl:pl + nw] = 10.0
        as_t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)[None]
        return {"pose_enc": as_t(enc), "depth": as_t(depth)[..., None], "depth_conf": as_t(conf)}
'''

STANDIN_POSE_ENC = '''
"""STAND-IN for vggt.utils.pose_enc (tests only): VGGT's absT_quaR_FoV decoding."""
import torch

def _rot(q):
    x, y, z, w = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(*q.shape[:-1], 3, 3)

def pose_encoding_to_extri_intri(pose_encoding, image_size_hw=None, pose_encoding_type="absT_quaR_FoV",
                                 build_intrinsics=True):
    t, q, fov_h, fov_w = pose_encoding[..., :3], pose_encoding[..., 3:7], pose_encoding[..., 7], pose_encoding[..., 8]
    extrinsics = torch.cat([_rot(q), t[..., None]], dim=-1)
    h, w = image_size_hw
    k = torch.zeros(pose_encoding.shape[:2] + (3, 3))
    k[..., 0, 0] = (w / 2) / torch.tan(fov_w / 2)
    k[..., 1, 1] = (h / 2) / torch.tan(fov_h / 2)
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = w / 2, h / 2, 1.0
    return extrinsics, k
'''


def _write_standin(root):
    pkg = root / "vggt"
    for sub in ("", "models", "utils"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text('"""STAND-IN for VGGT (tests only)."""\n')
    (pkg / "models" / "vggt.py").write_text(textwrap.dedent(STANDIN_MODEL))
    (pkg / "utils" / "pose_enc.py").write_text(textwrap.dedent(STANDIN_POSE_ENC))


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """Images of several sizes, their true cameras, and the stand-in `vggt` on sys.path."""
    from PIL import Image

    sizes = [(640, 480), (480, 640), (1000, 300), (333, 517)]
    truth, names = [], []
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for i, (w, h) in enumerate(sizes):
        angle = 2 * np.pi * i / len(sizes)
        eye = np.array([3 * np.cos(angle), 3 * np.sin(angle), 2.5])
        w2c = look_at_w2c(eye, np.array([0.2, -0.1, 0.0]), up=(0, 0, 1))
        fx = 0.9 * max(w, h) * (1 + 0.05 * i)
        truth.append({"width": w, "height": h, "fx": fx, "fy": fx * 1.02, "cx": w / 2, "cy": h / 2,
                      "w2c": w2c.tolist()})
        name = f"{i:04d}.png"
        Image.new("RGB", (w, h), (40 * i, 90, 160)).save(image_dir / name)
        names.append(name)
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    _write_standin(tmp_path / "standin")
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv("VGGT_STANDIN_TRUTH", str(tmp_path / "truth.json"))
    monkeypatch.syspath_prepend(str(tmp_path / "standin"))
    for mod in [m for m in sys.modules if m == "vggt" or m.startswith("vggt.")]:
        monkeypatch.delitem(sys.modules, mod)
    return image_dir, names, truth, tmp_path / "weights"


def test_preprocess_geometry_matches_vggt_pad_mode():
    from splatforge.poses.vggt_engine import preprocess_geometry

    g = preprocess_geometry(1920, 1080)
    assert (g.inner_width, g.inner_height) == (518, 294) and g.pad_top == 112 and g.pad_left == 0
    g = preprocess_geometry(1080, 1920)
    assert (g.inner_width, g.inner_height) == (294, 518) and g.pad_left == 112
    assert g.sx == pytest.approx(294 / 1080) and g.sy == pytest.approx(518 / 1920)


def test_vggt_conversion_recovers_true_cameras_and_surface(standin):
    from splatforge.poses import PoseOptions
    from splatforge.poses.vggt_engine import vggt_scene

    image_dir, names, truth, weights = standin
    options = PoseOptions(engine="vggt", vggt_weights=weights, vggt_max_points=5000, vggt_conf_threshold=5.0)
    scene = vggt_scene(image_dir, names, options)
    assert [f.name for f in scene.frames] == names
    for frame, cam in zip(scene.frames, truth):
        c = frame.camera
        assert (c.width, c.height) == (cam["width"], cam["height"])
        for key in ("fx", "fy", "cx", "cy"):
            assert getattr(c, key) == pytest.approx(cam[key], rel=1e-4), key
        np.testing.assert_allclose(frame.w2c, np.array(cam["w2c"]), atol=1e-5)
    assert len(scene.points) == 5000  # capped
    np.testing.assert_allclose(scene.points[:, 2], 0.0, atol=1e-3)  # on the true plane
    # every kept point projects inside some original image (padding was excluded)
    inside = np.zeros(len(scene.points), bool)
    for frame in scene.frames:
        cam = (frame.w2c[:3, :3] @ scene.points.T + frame.w2c[:3, 3:4]).T
        uv = (frame.camera.K @ cam.T).T
        uv = uv[:, :2] / uv[:, 2:3]
        inside |= (cam[:, 2] > 0) & (uv[:, 0] >= -1) & (uv[:, 0] <= frame.camera.width + 1) \
            & (uv[:, 1] >= -1) & (uv[:, 1] <= frame.camera.height + 1)
    assert inside.all()


def test_vggt_engine_writes_the_stage_outputs(standin, tmp_path):
    from splatforge.poses import PoseOptions, estimate_poses
    from splatforge.rundir import RunDir
    from splatforge.scene import read_scene
    from splatforge.scene.align import compare_poses
    from splatforge.scene.types import Camera, Frame, Scene

    image_dir, names, truth, weights = standin
    run = RunDir(tmp_path / "run")
    run.frames.mkdir(parents=True)
    for n in names:
        (run.frames / n).write_bytes((image_dir / n).read_bytes())
    result = estimate_poses(run, PoseOptions(engine="vggt", vggt_weights=weights, vggt_max_points=2000))
    assert result.registered == result.total == 4 and result.points == 2000
    assert json.loads(run.poses_json.read_text())["engine"] == "vggt"
    est = read_scene(run.transforms_json)
    assert len(est.points) == 2000
    ref = Scene([Frame(n, image_dir / n, Camera("PINHOLE", t["width"], t["height"], t["fx"], t["fy"], t["cx"],
                                                t["cy"]), np.array(t["w2c"])) for n, t in zip(names, truth)])
    err = compare_poses(est, ref)
    assert err.max_rotation_deg < 1e-3 and err.max_center_error < 1e-4


def test_without_vggt_the_error_says_how_to_install(tmp_path, monkeypatch):
    from splatforge.errors import PoseError
    from splatforge.poses import PoseOptions
    from splatforge.poses.vggt_engine import vggt_scene

    monkeypatch.setitem(sys.modules, "vggt", None)  # import vggt -> ImportError
    with pytest.raises(PoseError) as info:
        vggt_scene(tmp_path, ["a.png"], PoseOptions(engine="vggt"))
    assert "pip install" in info.value.advice and "--vggt-weights" in info.value.advice


def test_missing_weights_are_never_downloaded(standin, tmp_path, monkeypatch):
    from splatforge.errors import PoseError
    from splatforge.poses import PoseOptions
    from splatforge.poses.vggt_engine import vggt_scene

    image_dir, names, _, _ = standin
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(PoseError, match="weights"):
        vggt_scene(image_dir, names, PoseOptions(engine="vggt"))
