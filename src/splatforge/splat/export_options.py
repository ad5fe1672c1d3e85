"""The export stage's options (torch-free: options are validated before any stage runs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from splatforge.errors import InputError
from splatforge.splat.formats import DEFAULT_COMPACT, FORMATS, format_named


@dataclass
class ExportOptions:
    """What the export stage writes into RUN/export/.

    formats: names from `splat.formats.FORMATS` (ply, ply-compressed, splat, spz, sog); the PLY is exact,
    the others quantise. Default: the PLY and the compact format the viewer and the service load.
    sh_degree: the highest spherical-harmonics degree to keep (None: all the checkpoint has; lower makes
    every file smaller and view-dependent colour flatter). `.splat` holds degree 0 whatever this says.
    """

    formats: tuple[str, ...] = field(default_factory=lambda: ("ply", DEFAULT_COMPACT))
    sh_degree: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.formats, str):
            self.formats = tuple(name for name in self.formats.split(",") if name.strip())
        names = [format_named(name).name for name in self.formats]  # unknown names: InputError with the list
        if not names:
            raise InputError("no export format given", f"give one or more of: {', '.join(FORMATS)}")
        self.formats = tuple(dict.fromkeys(names))
        if self.sh_degree is not None and not 0 <= self.sh_degree <= 3:
            raise InputError(f"SH degree {self.sh_degree} is out of range", "give --sh-degree 0, 1, 2 or 3")
