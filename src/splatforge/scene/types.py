"""Camera, Frame and Scene: the data every stage exchanges (conventions in `conventions.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from splatforge.scene.conventions import as_pose, camera_center

# Extra (distortion) parameter names per supported COLMAP camera model, in COLMAP's order.
DISTORTION_PARAMS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": (),
    "PINHOLE": (),
    "SIMPLE_RADIAL": ("k1",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2"),
}
SINGLE_FOCAL_MODELS = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"}


@dataclass(frozen=True)
class Camera:
    """Intrinsics of one physical camera (pixels). `distortion` follows DISTORTION_PARAMS[model]."""

    model: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.model not in DISTORTION_PARAMS:
            raise ValueError(f"unsupported camera model {self.model!r}; supported: {sorted(DISTORTION_PARAMS)}")
        expected = len(DISTORTION_PARAMS[self.model])
        if len(self.distortion) != expected:
            raise ValueError(f"{self.model} takes {expected} distortion parameters, got {len(self.distortion)}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(abs(d) > 0 for d in self.distortion)

    @property
    def distortion_dict(self) -> dict[str, float]:
        return dict(zip(DISTORTION_PARAMS[self.model], self.distortion))

    def colmap_params(self) -> list[float]:
        """Parameters in COLMAP's order for this model."""
        if self.model in SINGLE_FOCAL_MODELS:
            return [self.fx, self.cx, self.cy, *self.distortion]
        return [self.fx, self.fy, self.cx, self.cy, *self.distortion]

    @classmethod
    def from_colmap(cls, model: str, width: int, height: int, params: list[float]) -> Camera:
        params = [float(p) for p in params]
        if model in SINGLE_FOCAL_MODELS:
            f, cx, cy, *dist = params
            return cls(model, width, height, f, f, cx, cy, tuple(dist))
        fx, fy, cx, cy, *dist = params
        return cls(model, width, height, fx, fy, cx, cy, tuple(dist))

    def scaled(self, factor: float) -> Camera:
        """The same camera for images resized by `factor` (e.g. 0.5 for half resolution)."""
        return replace(self, width=round(self.width * factor), height=round(self.height * factor),
                       fx=self.fx * factor, fy=self.fy * factor, cx=self.cx * factor, cy=self.cy * factor)

    def as_pinhole(self) -> Camera:
        return replace(self, model="PINHOLE", distortion=())


@dataclass
class Frame:
    """One image with its camera and pose.

    name: image path relative to the scene's image folder (COLMAP's image name).
    image: absolute path of the image file.
    w2c: world-to-camera 4x4, OpenCV axes.
    """

    name: str
    image: Path
    camera: Camera
    w2c: np.ndarray

    def __post_init__(self) -> None:
        self.image = Path(self.image)
        self.w2c = as_pose(self.w2c)

    @property
    def center(self) -> np.ndarray:
        return camera_center(self.w2c)


@dataclass
class Scene:
    """Posed frames plus optional sparse points.

    points: (N, 3) float64 world coordinates, or None.
    colors: (N, 3) uint8 RGB, or None.
    """

    frames: list[Frame]
    points: np.ndarray | None = None
    colors: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
            if self.colors is None:
                self.colors = np.full((len(self.points), 3), 128, dtype=np.uint8)
            self.colors = np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)
            if len(self.colors) != len(self.points):
                raise ValueError("points and colors differ in length")

    @property
    def cameras(self) -> list[Camera]:
        """Distinct cameras in order of first use."""
        seen: dict[Camera, None] = {}
        for frame in self.frames:
            seen.setdefault(frame.camera, None)
        return list(seen)

    @property
    def centers(self) -> np.ndarray:
        return np.array([f.center for f in self.frames]).reshape(-1, 3)

    def extent(self) -> float:
        """Radius of the camera positions around their mean (the scene's scale for tolerances)."""
        c = self.centers
        if len(c) == 0:
            return 0.0
        return float(np.linalg.norm(c - c.mean(0), axis=1).max())

    def frame_by_name(self, name: str) -> Frame:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError(name)
