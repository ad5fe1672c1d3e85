"""The splat as a PLY in the standard 3DGS layout (what SuperSplat, Spark and nerfstudio open).

Vertex properties, in order: x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3,
float32, with values as the original 3DGS writes them: opacity as a logit, scales as logs, the
quaternion (w, x, y, z) unnormalised, normals zero, and f_rest channel-major (all of red's
coefficients, then green's, then blue's). Written here rather than with `gsplat.exporter.export_splats`
because gsplat's PLY leaves out the nx ny nz properties that the INRIA layout (and tools reading it
by position) have, and so that the file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from splatforge.errors import InputError
from splatforge.rundir import atomic_path


def ply_dtype(n_rest: int) -> list[tuple[str, str]]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return [(n, "f4") for n in names]


def params_to_vertices(params: dict[str, torch.Tensor]) -> np.ndarray:
    """Raw parameters (see gaussians.py) -> structured array in the 3DGS PLY layout."""
    p = {k: v.detach().cpu().float().numpy() for k, v in params.items()}
    n = len(p["means"])
    rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # [N, 3, K-1] -> channel-major
    ok = np.isfinite(p["means"]).all(1) & np.isfinite(p["scales"]).all(1) & np.isfinite(p["opacities"])
    verts = np.zeros(n, dtype=ply_dtype(rest.shape[1]))
    verts["x"], verts["y"], verts["z"] = p["means"].T
    for i in range(3):
        verts[f"f_dc_{i}"] = p["sh0"][:, 0, i]
        verts[f"scale_{i}"] = p["scales"][:, i]
    for i in range(rest.shape[1]):
        verts[f"f_rest_{i}"] = rest[:, i]
    verts["opacity"] = p["opacities"]
    for i in range(4):
        verts[f"rot_{i}"] = p["quats"][:, i]
    return verts[ok]


REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")


def vertices_to_params(verts: np.ndarray) -> dict[str, torch.Tensor]:
    """Inverse of `params_to_vertices`; reads the properties by name, in any order."""
    names = verts.dtype.names or ()
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise InputError(f"the PLY has no Gaussian splat properties ({', '.join(missing[:4])} missing)",
                         "give a 3DGS PLY (x y z f_dc_* opacity scale_* rot_*), e.g. from splatforge export")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    col = lambda *keys: np.stack([np.asarray(verts[k], dtype=np.float32) for k in keys], axis=1)  # noqa: E731
    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((len(verts), 0), np.float32)
    return {
        "means": torch.from_numpy(col("x", "y", "z")),
        "scales": torch.from_numpy(col("scale_0", "scale_1", "scale_2")),
        "quats": torch.from_numpy(col("rot_0", "rot_1", "rot_2", "rot_3")),
        "opacities": torch.from_numpy(np.asarray(verts["opacity"], dtype=np.float32)),
        "sh0": torch.from_numpy(col("f_dc_0", "f_dc_1", "f_dc_2"))[:, None, :],
        "shN": torch.from_numpy(rest.reshape(len(verts), 3, n_rest // 3).transpose(0, 2, 1).copy()),
    }


def write_ply(params: dict[str, torch.Tensor], path: Path) -> Path:
    from plyfile import PlyData, PlyElement

    verts = params_to_vertices(params)
    with atomic_path(Path(path)) as tmp:
        PlyData([PlyElement.describe(verts, "vertex")], byte_order="<").write(str(tmp))
    return Path(path)


def ply_elements(path: Path) -> dict[str, list[str]]:
    """Element name -> property names (binary data is memory-mapped, not read: cheap on a large file)."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several unrelated types for a broken file
        raise InputError(f"{path} is not a readable PLY: {exc}", "re-export it with splatforge export") from None
    return {el.name: [p.name for p in el.properties] for el in ply.elements}


def read_ply(path: Path) -> dict[str, torch.Tensor]:
    """A standard (uncompressed) 3DGS PLY -> raw parameters."""
    from plyfile import PlyData

    try:
        data = PlyData.read(str(path))["vertex"].data
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable 3DGS PLY: {exc}", "re-export it with splatforge export") from None
    return vertices_to_params(data)
