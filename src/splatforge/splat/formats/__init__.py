"""Splat file formats: which there are, and how each is written and read.

    write_splat(params, path, format=None, sh_degree=None) -> Path    format from the name when None
    read_splat(path) -> params                                        any format below (by content)
    format_named(name), format_for_path(path), FORMATS

| name           | file             | written by                          | read back by            |
|----------------|------------------|-------------------------------------|-------------------------|
| ply            | .ply             | splatforge (the INRIA 3DGS layout)  | plyfile                 |
| ply-compressed | .compressed.ply  | gsplat `export_splats`              | splat-transform (Node)  |
| splat          | .splat           | gsplat `export_splats`              | splat-transform (Node)  |
| spz            | .spz             | splat-transform (Niantic's library) | splat-transform (Node)  |
| sog            | .sog             | splat-transform (PlayCanvas)        | splat-transform (Node)  |

`params` are raw parameters as in `splat/gaussians.py` (log scales, logit opacities, SH coefficients).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from splatforge.errors import InputError
from splatforge.rundir import atomic_path

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # importing this module (options, format names) must not load torch
    import torch


@dataclass(frozen=True)
class SplatFormat:
    name: str
    suffix: str  # the file name ends with this
    lossy: bool
    max_sh_degree: int  # the highest spherical-harmonics degree the format stores
    needs_node: bool  # written with splat-transform (Node.js)
    media_type: str
    description: str


FORMATS: dict[str, SplatFormat] = {f.name: f for f in (
    SplatFormat("ply", ".ply", False, 3, False, "application/octet-stream",
                "standard 3DGS PLY, float32: every viewer and trainer reads it"),
    SplatFormat("ply-compressed", ".compressed.ply", True, 3, False, "application/octet-stream",
                "SuperSplat/PlayCanvas compressed PLY: 16 bytes a Gaussian plus 8-bit SH"),
    SplatFormat("splat", ".splat", True, 0, False, "application/octet-stream",
                "antimatter15 .splat: 32 bytes a Gaussian, base colour only (no SH)"),
    SplatFormat("spz", ".spz", True, 3, True, "application/octet-stream",
                "Niantic SPZ: quantised and gzipped"),
    SplatFormat("sog", ".sog", True, 3, True, "application/zip",
                "PlayCanvas SOG: WebP images in a zip, SH by k-means; the smallest, slow without a GPU"),
)}
# What the pipeline's export stage writes beside the PLY, what `splatforge view RUN` shows and what the
# service's viewer loads (docs/benchmarks.md, "Export formats"): SPZ, about 10x smaller than the PLY with
# every SH band, written in seconds. SOG is smaller still, but splat-transform clusters its SH with
# k-means that needs WebGPU (a Vulkan GPU) to be fast: on a CPU alone a 1M-Gaussian splat takes hours.
DEFAULT_COMPACT = "spz"
ALIASES = {"ply_compressed": "ply-compressed", "compressed-ply": "ply-compressed", "compressed.ply": "ply-compressed"}


def format_named(name: str) -> SplatFormat:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in FORMATS:
        raise InputError(f"unknown splat format {name!r}", f"use one of: {', '.join(FORMATS)}")
    return FORMATS[key]


def format_for_path(path: Path) -> SplatFormat:
    """The format a file name asks for (longest matching ending: .compressed.ply before .ply)."""
    name = Path(path).name.lower()
    for fmt in sorted(FORMATS.values(), key=lambda f: -len(f.suffix)):
        if name.endswith(fmt.suffix) and len(name) > len(fmt.suffix):
            return fmt
    endings = ", ".join(f.suffix for f in FORMATS.values())
    raise InputError(f"{Path(path).name}: the file name does not say which splat format to write",
                     f"end it with one of {endings}, or give --format {'|'.join(FORMATS)}")


def sniff_format(path: Path) -> SplatFormat:
    """The format of an existing file, by its content where the name can mislead (.ply)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:3] == b"ply":
        from splatforge.splat.formats.ply import ply_elements

        return FORMATS["ply-compressed" if "chunk" in ply_elements(path) else "ply"]
    if head[:2] == b"\x1f\x8b" or head == b"NGSP":
        return FORMATS["spz"]  # SPZ up to version 3 is a gzip stream; version 4 starts with its own header
    if head == b"PK\x03\x04":
        return FORMATS["sog"]  # SOG is a zip
    name = path.name.lower()
    if name.endswith(".splat") and len(name) > len(".splat"):
        return FORMATS["splat"]  # no magic number: rows of 32 bytes
    raise InputError(f"{path.name} is not a splat file that splatforge reads",
                     "give one of: " + ", ".join(f.suffix for f in FORMATS.values()))


def limit_sh_degree(params: dict[str, torch.Tensor], degree: int | None) -> dict[str, torch.Tensor]:
    """`params` with the SH bands above `degree` dropped (None: unchanged)."""
    if degree is None:
        return params
    if not 0 <= degree <= 3:
        raise InputError(f"SH degree {degree} is out of range", "give --sh-degree 0, 1, 2 or 3")
    return {**params, "shN": params["shN"][:, : (degree + 1) ** 2 - 1]}


def sh_degree_of(params: dict[str, torch.Tensor]) -> int:
    return round((params["shN"].shape[1] + 1) ** 0.5) - 1


def write_splat(params: dict[str, torch.Tensor], path: Path, format: SplatFormat | str | None = None,  # noqa: A002
                sh_degree: int | None = None) -> Path:
    """Write `params` to `path` in `format` (default: from the file name), atomically."""
    path = Path(path)
    fmt = format_for_path(path) if format is None else (format if isinstance(format, SplatFormat)
                                                           else format_named(format))
    params = limit_sh_degree(params, sh_degree)
    if fmt.name == "ply":
        from splatforge.splat.formats.ply import write_ply

        return write_ply(params, path)
    if fmt.name in ("splat", "ply-compressed"):
        from splatforge.splat.formats.gsplat_writers import write_with_gsplat

        return write_with_gsplat(params, path, fmt.name)
    from splatforge.splat.formats import splat_transform
    from splatforge.splat.formats.ply import write_ply

    what = f"writing {path.name} ({fmt.name})"
    splat_transform.command(what)  # fail before the temporary PLY is written
    n = len(params["means"])
    if fmt.name == "sog" and sh_degree_of(params) > 0 and n > 50_000 and not splat_transform.webgpu_possible():
        log.warning("SOG without a GPU: splat-transform clusters the spherical harmonics of %d Gaussians with "
                    "k-means on the CPU (no Vulkan loader here), which takes minutes to hours; "
                    "--sh-degree 0 or --format spz are fast", n)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent if path.parent.exists() else None) as tmp:
        source = write_ply(params, Path(tmp) / "source.ply")
        with atomic_path(path) as out:  # keeps the suffix, which tells splat-transform the format
            splat_transform.convert(source, out, what, extra=_writer_options(fmt))
    return path


def _writer_options(fmt: SplatFormat) -> list[str]:
    # splat-transform writes SPZ version 4 by default, which Spark 2.2 (the viewer) cannot open ("Invalid
    # gzip header": version 4 is no longer one gzip stream); version 3 is what every SPZ reader opens.
    return ["--spz-version", "3"] if fmt.name == "spz" else []


def read_splat(path: Path) -> dict[str, torch.Tensor]:
    """Any format above -> raw parameters. Quantised formats come back as their decoders see them."""
    from splatforge.splat.formats.ply import read_ply

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", "give a splat file (.ply, .compressed.ply, .splat, .spz, .sog)")
    fmt = sniff_format(path)
    if fmt.name == "ply":
        return read_ply(path)
    from splatforge.splat.formats import splat_transform

    with tempfile.TemporaryDirectory(prefix="splatforge-read-") as tmp:
        # splat-transform picks its reader by the file name: give it the name the content calls for.
        source = Path(tmp) / f"input{fmt.suffix}"
        source.symlink_to(path.resolve())
        plain = splat_transform.convert(source, Path(tmp) / "decoded.ply", f"reading {path.name} ({fmt.name})")
        return read_ply(plain)


__all__ = ["SplatFormat", "FORMATS", "DEFAULT_COMPACT", "format_named", "format_for_path", "sniff_format", "write_splat",
           "read_splat", "limit_sh_degree", "sh_degree_of"]
