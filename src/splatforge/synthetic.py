"""Synthetic captures with known cameras: a textured room with objects, ray cast in numpy.

The scene is a closed room (textured floor, walls and ceiling, so every pixel carries texture) with a few
spheres, yawed boxes and upright cylinders standing on the floor around the origin. Every surface has its
own procedural texture (multi-octave value noise, hard-edged blobs, coloured cells and fine grain), baked
once into a world-space grid: 2D for the room's faces, 3D (in the object's own frame) for the objects, so
texture is fixed to the surface under any camera motion. Shading is ambient + Lambert from one fixed
light, with no view-dependent term, so a surface point has the same colour from every view (and the
reference points carry exactly that colour).

Rendering is analytic ray casting (ray/sphere, ray/box, ray/cylinder, ray/room) in vectorised numpy with
2x2 supersampling. It shares no code with the splat renderers, so tests of those are not circular.

World frame: z up, the floor is z = 0, the objects stand around the origin. Cameras: world-to-camera,
OpenCV axes, PINHOLE intrinsics from a horizontal field of view.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from splatforge.scene.conventions import camera_center, look_at_w2c
from splatforge.scene.types import Camera, Frame, Scene

_EPS = 1e-4


@dataclass
class SyntheticOptions:
    """Every knob of a synthetic capture; the defaults make a small, SIFT-friendly orbit."""

    n_views: int = 24
    width: int = 320
    height: int = 240
    path: str = "orbit"  # "orbit" (full circle, constant height) or "handheld" (smooth random walk on an arc)
    fov_deg: float = 60.0  # horizontal field of view
    seed: int = 0
    n_points: int = 10000  # true surface points written to points.ply
    image_format: str = "png"  # "png" or "jpg"
    jpeg_quality: int = 95
    supersample: int = 2  # rays per pixel along each axis
    orbit_radius: float = 4.0  # metres from the z axis
    camera_height: float = 1.8  # metres above the floor
    target_height: float = 0.5  # cameras look at (0, 0, target_height)
    handheld_arc_deg: float = 240.0  # how far around the scene the hand-held path walks
    handheld_jitter: float = 1.0  # scales the hand-held path's wobble (0: a smooth arc)
    n_spheres: int = 3
    n_boxes: int = 3
    n_cylinders: int = 2
    room_half_size: float = 7.0  # the room spans [-s, s] in x and y
    room_height: float = 5.0
    object_fraction: float = 0.6  # share of n_points on the objects; the rest on floor, walls and ceiling
    texel_scale: float = 1.0  # texture grid spacing relative to the default (smaller: finer, slower)
    max_texture_size: int = 2048  # texels along a side of a floor, wall or ceiling texture (caps memory)
    max_volume_size: int = 128  # texels along a side of an object's 3D texture (caps memory and time)


# ----------------------------------------------------------------------------------------------------------
# World description


@dataclass
class GridTexture:
    """A colour grid baked from a procedural texture.

    data: (n0, n1[, n2], 3) uint8 RGB; cell i's centre lies at origin + (i + 0.5) * texel (per axis).
    """

    data: np.ndarray
    origin: np.ndarray
    texel: float

    def sample(self, coords: np.ndarray) -> np.ndarray:
        """Bi/trilinear colour at `coords` (M, k) in the grid's frame (metres) -> (M, 3) float32 in [0, 1]."""
        k = self.data.ndim - 1
        u = ((coords - self.origin) / self.texel - 0.5).astype(np.float32)  # grid index units
        if len(u) == 0:
            return np.zeros((0, 3), np.float32)
        if k == 2:
            return _remap(self.data, u[:, 0], u[:, 1])
        n0, n1, n2 = self.data.shape[:3]
        if n0 * n1 >= 32000:  # beyond cv2.remap's image size: plain numpy
            return _sample_numpy(self.data, u)
        # Trilinear = linear blend of two bilinear look-ups in the volume seen as an (n0 * n1, n2) image.
        i0 = np.clip(np.floor(u[:, 0]), 0, n0 - 2)
        f0 = np.clip(u[:, 0] - i0, 0.0, 1.0)[:, None]
        u1 = np.clip(u[:, 1], 0, n1 - 1)
        flat = self.data.reshape(n0 * n1, n2, 3)
        lo = _remap(flat, i0 * n1 + u1, u[:, 2])
        hi = _remap(flat, (i0 + 1) * n1 + u1, u[:, 2])
        return lo + (hi - lo) * f0


def _remap(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear colours (M, 3) float32 in [0, 1] of `image` (H, W, 3) uint8 at float pixel `rows`, `cols` (M,)."""
    import cv2

    m = len(rows)
    width = 256  # cv2.remap wants both sides of its output below 32767: lay the M look-ups out in rows
    pad = (-m) % width
    xy = np.empty((m + pad, 2), np.float32)
    xy[:m, 0], xy[:m, 1] = cols, rows
    xy[m:] = 0.0
    out = cv2.remap(image, xy.reshape(-1, width, 2), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3)[:m].astype(np.float32) * (1.0 / 255.0)


def _sample_numpy(data: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Multilinear colours (M, 3) of `data` (n0, .., nk-1, 3) uint8 at grid-index coordinates `u` (M, k)."""
    k = data.ndim - 1
    shape = np.array(data.shape[:k])
    i0 = np.clip(np.floor(u).astype(np.int64), 0, shape - 2)
    frac = np.clip(u - i0, 0.0, 1.0).astype(np.float32)
    flat = data.reshape(-1, 3)
    strides = np.r_[np.cumprod(shape[::-1])[::-1][1:], 1]
    out = np.zeros((len(u), 3), np.float32)
    for corner in range(1 << k):
        offs = [(corner >> a) & 1 for a in range(k)]
        w = np.ones(len(u), np.float32)
        idx = np.zeros(len(u), np.int64)
        for a in range(k):
            w *= frac[:, a] if offs[a] else 1.0 - frac[:, a]
            idx += (i0[:, a] + offs[a]) * strides[a]
        out += w[:, None] * flat[idx]
    return out / 255.0


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    texture: GridTexture  # 3D, in world coordinates relative to `center`


@dataclass
class Box:
    center: np.ndarray
    half: np.ndarray  # half extents along the box's own axes
    yaw: float  # rotation about world z, radians
    texture: GridTexture  # 3D, in the box's frame (centred)

    @property
    def rotation(self) -> np.ndarray:
        """Box-to-world rotation (3, 3)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Cylinder:
    base: np.ndarray  # centre of the bottom cap
    radius: float
    height: float
    texture: GridTexture  # 3D, in world coordinates relative to `base`


# Room faces in the order of `_room_exit`'s face index: axis, sign, inward normal, the two texture axes.
_ROOM_FACES = (
    ("wall+x", 0, +1, (-1.0, 0.0, 0.0), (1, 2)),
    ("wall-x", 0, -1, (1.0, 0.0, 0.0), (1, 2)),
    ("wall+y", 1, +1, (0.0, -1.0, 0.0), (0, 2)),
    ("wall-y", 1, -1, (0.0, 1.0, 0.0), (0, 2)),
    ("ceiling", 2, +1, (0.0, 0.0, -1.0), (0, 1)),
    ("floor", 2, -1, (0.0, 0.0, 1.0), (0, 1)),
)


@dataclass
class World:
    """Everything `render_view` needs: the room, its objects and the light."""

    room_half_size: float
    room_height: float
    room_textures: list[GridTexture]  # one per entry of _ROOM_FACES
    spheres: list[Sphere]
    boxes: list[Box]
    cylinders: list[Cylinder]
    light_dir: np.ndarray = field(default_factory=lambda: _unit([0.45, -0.35, 0.82]))  # towards the light
    ambient: float = 0.5
    diffuse: float = 0.5

    @property
    def objects(self) -> list[Sphere | Box | Cylinder]:
        return [*self.spheres, *self.boxes, *self.cylinders]

    def describe(self) -> dict:
        """A JSON-able summary of the geometry (for Scene.meta and reports)."""
        return {
            "room": {"half_size": self.room_half_size, "height": self.room_height},
            "spheres": [{"center": s.center.tolist(), "radius": s.radius} for s in self.spheres],
            "boxes": [{"center": b.center.tolist(), "half": b.half.tolist(), "yaw": b.yaw} for b in self.boxes],
            "cylinders": [{"base": c.base.tolist(), "radius": c.radius, "height": c.height}
                          for c in self.cylinders],
        }


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------------------------------------
# Procedural textures


def _lattice_interp(lattice: np.ndarray, positions: list[np.ndarray], smooth: bool) -> np.ndarray:
    """Separable interpolation of `lattice` (a, b[, c][, ch]) at per-axis `positions` (lattice units).

    smooth=True: value noise (smoothstep-weighted linear, C1); False: nearest cell (hard-edged cells).
    """
    out = lattice
    for axis, pos in enumerate(positions):
        i0 = np.floor(pos).astype(np.int64)
        shape = [1] * out.ndim
        shape[axis] = len(pos)
        if smooth:
            f = pos - i0
            w = (f * f * (3.0 - 2.0 * f)).reshape(shape).astype(np.float32)
            out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i0 + 1, axis=axis) * w
        else:
            out = np.take(out, i0, axis=axis)
    return out


class _Grid:
    """A regular grid of `shape` samples, `texel` metres apart, covering `extent` metres per axis.

    Random lattices are sized from the extent (not the texel), so the same seed gives the same texture
    features at every resolution; only layers finer than the grid resolves are left out.
    """

    def __init__(self, extent: np.ndarray, texel: float):
        self.extent = np.asarray(extent, dtype=np.float64)
        self.texel = float(texel)
        self.shape = tuple(int(n) for n in np.ceil(self.extent / texel).astype(int) + 2)

    def lattice(self, cell: float, rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
        """Per-axis sample positions in lattice units (random phase) and the lattice shape they need."""
        phase = rng.uniform(0.0, 64.0, len(self.shape))
        lat = [int(math.ceil((e + 2.5 * self.texel) / cell + ph)) + 2 for e, ph in zip(self.extent, phase)]
        pos = [np.minimum((np.arange(n) - 0.5) * self.texel / cell + ph, m - 2)
               for n, ph, m in zip(self.shape, phase, lat)]
        return pos, lat


def _value_noise(grid: _Grid, cell: float, rng: np.random.Generator) -> np.ndarray:
    pos, lat = grid.lattice(cell, rng)
    return _lattice_interp(rng.random(lat, dtype=np.float32), pos, smooth=True)


def _fbm(grid: _Grid, cell: float, rng: np.random.Generator, gain: float = 0.55, finest: float = 2.0):
    """Multi-octave value noise down to `finest` texels, contrast-stretched to about [0, 1]."""
    total = np.zeros(grid.shape, np.float32)
    amp, norm = 1.0, 0.0
    while True:
        total += amp * _value_noise(grid, cell, rng)
        norm += amp
        cell *= 0.5
        amp *= gain
        if cell < finest * grid.texel:
            break
    return np.clip((total - 0.5 * norm) * (2.4 / norm) + 0.5, 0.0, 1.0)


def _cells(grid: _Grid, cell: float, rng: np.random.Generator, palette: np.ndarray, coverage: float):
    """Hard-edged random-coloured cells: colours (shape, 3) and a 0/1 mask (shape) of the covered cells."""
    pos, lat = grid.lattice(cell, rng)
    colours = _random_colours(rng, lat, palette)
    mask = (rng.random(lat) < coverage).astype(np.float32)
    return _lattice_interp(colours, pos, smooth=False), _lattice_interp(mask, pos, smooth=False)


def _random_colours(rng: np.random.Generator, shape, palette: np.ndarray) -> np.ndarray:
    """Random colours (shape, 3): half near the palette, half anywhere, so cells contrast with the base."""
    n = int(np.prod(shape))
    pick = palette[rng.integers(0, len(palette), n)] + rng.normal(0, 0.12, (n, 3))
    anywhere = rng.random((n, 3))
    mixed = np.where(rng.random((n, 1)) < 0.5, pick, anywhere)
    return np.clip(mixed, 0.0, 1.0).astype(np.float32).reshape(*shape, 3)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Four colours (4, 3) around a random hue: dark, bright, and a contrasting dark/bright pair."""
    import colorsys

    hue = rng.random()
    out = []
    for i in range(4):
        h = (hue + rng.normal(0, 0.1) + (0.45 if i >= 2 else 0.0)) % 1.0
        v = rng.uniform(0.12, 0.32) if i % 2 == 0 else rng.uniform(0.78, 1.0)
        out.append(colorsys.hsv_to_rgb(h, rng.uniform(0.3, 0.85), v))
    return np.array(out, np.float32)


def procedural_texture(extent: np.ndarray, texel: float, scale: float, seed: np.random.SeedSequence,
                       saturation: float = 1.0) -> np.ndarray:
    """A rich, non-repeating colour texture sampled on a grid `texel` apart over `extent` (2 or 3 axes).

    scale: the size (metres) of the texture's largest features; layers go down to ~2-3 texels.
    saturation: 1 keeps the colours, 0 makes them grey (the luminance detail stays either way).
    Returns (n0, n1[, n2], 3) uint8; sample i of an axis lies at (i - 0.5) * texel from the extent's start.
    """
    grid = _Grid(extent, texel)
    rngs = [np.random.default_rng(s) for s in seed.spawn(12)]
    pal = _palette(rngs[0])
    base_t = _fbm(grid, scale, rngs[1])[..., None]
    colour = pal[0] + (pal[1] - pal[0]) * base_t
    blob = np.clip((_fbm(grid, scale * 0.5, rngs[2], finest=3.0) - 0.6) * 10.0, 0.0, 1.0)[..., None]
    colour += (pal[2] + (pal[3] - pal[2]) * (1.0 - base_t) - colour) * blob  # organic hard-edged blobs
    for k, (cell, coverage) in enumerate(((0.25, 0.25), (0.1, 0.25), (0.04, 0.2))):
        if scale * cell >= 3.0 * texel:
            cell_colour, mask = _cells(grid, scale * cell, rngs[3 + k], pal, coverage)
            colour += (cell_colour - colour) * (mask[..., None] * 0.9)
    # Speckles: isolated dark or bright dots of a few sizes, the blob-like features SIFT finds best.
    for k, cell in enumerate((0.06, 0.025)):
        if scale * cell >= 2.5 * texel:
            r = rngs[6 + k]
            dots = np.clip((_value_noise(grid, scale * cell, r) - 0.8) * 14.0, 0.0, 1.0)
            shade = np.clip((_value_noise(grid, scale * cell * 3.0, r) - 0.5) * 8.0 + 0.5, 0.0, 1.0)
            colour += ((pal[1] * 1.05 - pal[0]) * shade[..., None] + pal[0] * 0.5 - colour) * dots[..., None]
    grain = _fbm(grid, max(scale * 0.02, 3.0 * texel), rngs[8], finest=2.0)
    colour *= (0.8 + 0.35 * grain)[..., None]
    if saturation != 1.0:
        grey = colour @ np.array([0.299, 0.587, 0.114], np.float32)
        colour = grey[..., None] + (colour - grey[..., None]) * saturation
    return np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# World construction


def _texel_sizes(options: SyntheticOptions) -> tuple[float, float]:
    """Texture grid spacing (objects and floor, walls and ceiling) matched to the pixel footprint."""
    per_metre = 2.0 * math.tan(math.radians(options.fov_deg) / 2.0) / options.width  # pixel size at 1 m
    near = float(np.clip(per_metre * 2.6 * options.texel_scale, 0.003, 0.08))
    far = float(np.clip(per_metre * 5.0 * options.texel_scale, 0.006, 0.15))
    return near, far


def build_world(options: SyntheticOptions = SyntheticOptions()) -> World:
    """The random scene of `options.seed`, its textures baked at a resolution fitting `options.width`.

    The geometry depends on the seed and the object counts only; the textures on the seed too (finer
    layers are dropped at low resolution).
    """
    layout_rng = np.random.default_rng(np.random.SeedSequence([options.seed, 1]))
    texture_seeds = iter(np.random.SeedSequence([options.seed, 2]).spawn(64))
    near, far = _texel_sizes(options)
    s, h = options.room_half_size, options.room_height
    room_textures = []
    for name, _axis, _sign, _normal, tex_axes in _ROOM_FACES:
        extent = np.array([2 * s, 2 * s, h])[list(tex_axes)]
        texel = max(near if name == "floor" else far, float(extent.max()) / options.max_texture_size)
        data = procedural_texture(extent, texel, 1.6 if name == "floor" else 2.5, next(texture_seeds),
                                  saturation=0.45)
        room_textures.append(GridTexture(data, np.array([-s, -s, 0.0])[list(tex_axes)] - texel, texel))

    # Place objects on the floor without overlaps, inside a disc well within the camera orbit.
    rng = layout_rng
    kinds = ["sphere"] * options.n_spheres + ["box"] * options.n_boxes + ["cylinder"] * options.n_cylinders
    rng.shuffle(kinds)
    placed: list[tuple[np.ndarray, float]] = []  # footprint centre (2,), bounding radius
    spheres, boxes, cylinders = [], [], []
    area_radius = max(0.6, min(2.0, options.orbit_radius * 0.45))
    for kind in kinds:
        tex_seed = next(texture_seeds)
        for _attempt in range(200):
            if kind == "sphere":
                size, lift = rng.uniform(0.3, 0.6), (rng.uniform(0.0, 0.4) if rng.random() < 0.3 else 0.0)
                bound = size
            elif kind == "box":
                half = np.array([rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.6)])
                yaw = rng.uniform(0, math.pi)
                bound = float(np.linalg.norm(half[:2]))
            else:
                radius, height = rng.uniform(0.15, 0.4), rng.uniform(0.5, 1.4)
                bound = radius
            r = area_radius * math.sqrt(rng.random())
            phi = rng.uniform(0, 2 * math.pi)
            xy = np.array([r * math.cos(phi), r * math.sin(phi)])
            if all(np.linalg.norm(xy - c) > bound + b + 0.1 for c, b in placed):
                break
        else:
            continue  # no room left for this object
        placed.append((xy, bound))
        if kind == "sphere":
            extent = np.full(3, 2 * size)
        elif kind == "box":
            extent = 2 * half
        else:
            extent = np.array([2 * radius, 2 * radius, height])
        texel = max(near, float(extent.max()) / options.max_volume_size)
        if kind == "sphere":
            data = procedural_texture(extent, texel, size * 1.6, tex_seed)
            spheres.append(Sphere(np.array([*xy, size + lift]), float(size),
                                  GridTexture(data, np.full(3, -size - texel), texel)))
        elif kind == "box":
            data = procedural_texture(extent, texel, float(half.max()) * 1.6, tex_seed)
            boxes.append(Box(np.array([*xy, half[2]]), half, float(yaw), GridTexture(data, -half - texel, texel)))
        else:
            data = procedural_texture(extent, texel, max(radius, height / 2) * 1.6, tex_seed)
            origin = np.array([-radius - texel, -radius - texel, -texel])
            cylinders.append(Cylinder(np.array([*xy, 0.0]), float(radius), float(height),
                                      GridTexture(data, origin, texel)))
    return World(s, h, room_textures, spheres, boxes, cylinders)


# ----------------------------------------------------------------------------------------------------------
# Ray casting


def _hit_sphere(origin: np.ndarray, dirs: np.ndarray, sph: Sphere) -> np.ndarray:
    """Distance along unit `dirs` (N, 3) from `origin` (3,) to the sphere, inf where missed. (N,)"""
    oc = (origin - sph.center).astype(np.float32)
    b = dirs @ oc
    c = float(oc @ oc - sph.radius**2)
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        t = -b - np.sqrt(disc)
    return np.where((disc > 0) & (t > _EPS), t, np.inf)


def _hit_box(origin: np.ndarray, dirs: np.ndarray, box: Box) -> np.ndarray:
    rot = box.rotation.astype(np.float32)
    o = (rot.T @ (origin - box.center)).astype(np.float32)
    d = dirs @ rot  # == (rot.T @ dirs.T).T: directions in the box frame
    tmin = np.full(len(dirs), -np.inf, np.float32)
    tmax = np.full(len(dirs), np.inf, np.float32)
    for a in range(3):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d[:, a]
            t1 = (-box.half[a] - o[a]) * inv
            t2 = (box.half[a] - o[a]) * inv
        # A ray parallel to a slab gives +-inf (inside) or nan (on the plane): treat nan as inside.
        tmin = np.fmax(tmin, np.fmin(t1, t2))
        tmax = np.fmin(tmax, np.fmax(t1, t2))
    return np.where((tmax >= tmin) & (tmin > _EPS), tmin, np.inf)


def _hit_cylinder(origin: np.ndarray, dirs: np.ndarray, cyl: Cylinder) -> np.ndarray:
    o = (origin - cyl.base).astype(np.float32)
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    a = dx * dx + dy * dy
    b = dx * o[0] + dy * o[1]
    c = float(o[0] ** 2 + o[1] ** 2 - cyl.radius**2)
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        z = o[2] + t_side * dz
        t_side = np.where((disc > 0) & (a > 1e-12) & (t_side > _EPS) & (z >= 0) & (z <= cyl.height), t_side, np.inf)
        best = t_side
        for zc in (0.0, cyl.height):
            t_cap = (zc - o[2]) / dz
            px, py = o[0] + t_cap * dx, o[1] + t_cap * dy
            ok = (t_cap > _EPS) & (px * px + py * py <= cyl.radius**2)
            best = np.minimum(best, np.where(ok, t_cap, np.inf))
    return best


def _room_exit(origin: np.ndarray, dirs: np.ndarray, world: World) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the room's boundary and the face index (into _ROOM_FACES) for rays from inside."""
    lo = (-world.room_half_size, -world.room_half_size, 0.0)
    hi = (world.room_half_size, world.room_half_size, world.room_height)
    t = np.full(len(dirs), np.inf, np.float32)
    face = np.zeros(len(dirs), np.int64)
    for axis in range(3):
        d = dirs[:, axis]
        positive = d > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (np.where(positive, hi[axis], lo[axis]) - np.float32(origin[axis])) / d
        closer = ta < t  # nan (d == 0) compares False
        t[closer] = ta[closer]
        face[closer] = 2 * axis + np.where(positive[closer], 0, 1)  # _ROOM_FACES order: +x, -x, +y, -y, +z, -z
    return t, face


def _object_albedo_normal(obj, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture colour (M, 3) and outward unit normal (M, 3) at surface `points` (M, 3) of one object."""
    if isinstance(obj, Sphere):
        local = points - obj.center
        return obj.texture.sample(local), local / np.linalg.norm(local, axis=1, keepdims=True)
    if isinstance(obj, Box):
        rot = obj.rotation
        local = (points - obj.center) @ rot
        axis = np.argmax(np.abs(local) / obj.half, axis=1)
        n_local = np.zeros_like(local)
        n_local[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
        return obj.texture.sample(local), n_local @ rot.T
    local = points - obj.base
    radial = np.linalg.norm(local[:, :2], axis=1)
    to_side = np.abs(radial - obj.radius)
    to_cap = np.minimum(np.abs(local[:, 2]), np.abs(local[:, 2] - obj.height))
    normal = np.zeros_like(local)
    side = to_side < to_cap
    normal[side, :2] = local[side, :2] / np.maximum(radial[side, None], 1e-9)
    normal[~side, 2] = np.where(local[~side, 2] > obj.height / 2, 1.0, -1.0)
    return obj.texture.sample(local), normal


def _room_albedo(world: World, face: int, points: np.ndarray) -> np.ndarray:
    axes = list(_ROOM_FACES[face][4])
    return world.room_textures[face].sample(points[:, axes])


def shade(world: World, albedo: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Ambient + Lambert colour (M, 3) in [0, 1] of surfaces with `albedo` (M, 3) and `normals` (M, 3)."""
    lambert = np.clip(normals @ world.light_dir.astype(np.float32), 0.0, None)
    return np.clip(albedo * (world.ambient + world.diffuse * lambert)[:, None], 0.0, 1.0)


def cast_rays(world: World, origin: np.ndarray, dirs: np.ndarray,
              candidates: list[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Colour (N, 3) float32 in [0, 1] and hit distance (N,) of unit rays `dirs` (N, 3) from `origin` (3,).

    candidates: per object of `world.objects`, the indices of the rays that may hit it (None: all rays).
    """
    dirs = dirs.astype(np.float32)
    t, face = _room_exit(origin, dirs, world)
    hit = np.full(len(dirs), -1, np.int64)  # -1: the room, k: world.objects[k]
    for k, obj in enumerate(world.objects):
        cand = candidates[k] if candidates is not None else None
        if cand is None:
            cand = np.arange(len(dirs))
        if not len(cand):
            continue
        fn = _hit_sphere if isinstance(obj, Sphere) else _hit_box if isinstance(obj, Box) else _hit_cylinder
        tk = fn(origin, dirs[cand], obj)
        closer = tk < t[cand]
        t[cand[closer]] = tk[closer]
        hit[cand[closer]] = k
    points = origin.astype(np.float32) + t[:, None] * dirs
    colour = np.zeros((len(dirs), 3), np.float32)
    key = np.where(hit >= 0, hit, len(world.objects) + face)
    order = np.argsort(key, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(key, minlength=len(world.objects) + len(_ROOM_FACES)))]
    for k, obj in enumerate(world.objects):
        sel = order[bounds[k]:bounds[k + 1]]
        if len(sel):
            albedo, normal = _object_albedo_normal(obj, points[sel].astype(np.float64))
            colour[sel] = shade(world, albedo, normal.astype(np.float32))
    for f in range(len(_ROOM_FACES)):
        k = len(world.objects) + f
        sel = order[bounds[k]:bounds[k + 1]]
        if len(sel):
            normal = np.broadcast_to(np.array(_ROOM_FACES[f][3], np.float32), (len(sel), 3))
            colour[sel] = shade(world, _room_albedo(world, f, points[sel]), normal)
    return colour, t


def _bounding_box(obj) -> tuple[np.ndarray, np.ndarray]:
    """World-space axis-aligned bounds (lo, hi) of an object."""
    if isinstance(obj, Sphere):
        return obj.center - obj.radius, obj.center + obj.radius
    if isinstance(obj, Box):
        ext = np.abs(obj.rotation) @ obj.half
        return obj.center - ext, obj.center + ext
    return obj.base - [obj.radius, obj.radius, 0.0], obj.base + [obj.radius, obj.radius, obj.height]


def _screen_candidates(world: World, cam: Camera, w2c: np.ndarray) -> list[np.ndarray | None]:
    """Per object, the indices (row-major) of the pixels whose rays may hit it: its projected bounds."""
    out: list[np.ndarray | None] = []
    for obj in world.objects:
        lo, hi = _bounding_box(obj)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        cam_pts = corners @ w2c[:3, :3].T + w2c[:3, 3]
        if np.any(cam_pts[:, 2] < 1e-3):  # reaches behind the camera: test every ray
            out.append(None)
            continue
        px = cam_pts[:, 0] / cam_pts[:, 2] * cam.fx + cam.cx
        py = cam_pts[:, 1] / cam_pts[:, 2] * cam.fy + cam.cy
        x0, x1 = max(int(math.floor(px.min())) - 1, 0), min(int(math.ceil(px.max())) + 1, cam.width)
        y0, y1 = max(int(math.floor(py.min())) - 1, 0), min(int(math.ceil(py.max())) + 1, cam.height)
        if x0 >= x1 or y0 >= y1:
            out.append(np.zeros(0, np.int64))
            continue
        out.append((np.arange(y0, y1)[:, None] * cam.width + np.arange(x0, x1)[None, :]).ravel())
    return out


@functools.lru_cache(maxsize=4)
def _pixel_rays(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (H*W, 3) float32 in camera axes through pixel centres, and their z (H*W,)."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float32) + 0.5, np.arange(cam.height, dtype=np.float32) + 0.5)
    d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1).reshape(-1, 3)
    z = 1.0 / np.linalg.norm(d_cam, axis=1)
    d_cam *= z[:, None]
    d_cam.flags.writeable = False
    z.flags.writeable = False
    return d_cam, z


def render_view(world: World, camera: Camera, w2c: np.ndarray, supersample: int = 2,
                return_depth: bool = False):
    """Ray-cast one PINHOLE view: (H, W, 3) uint8 RGB, plus (H, W) float32 z-depth with `return_depth`.

    With supersample=s the image is the mean of s x s rays per pixel (the camera scaled by s, boxed down);
    so is the depth (exact at supersample=1 or inside smooth surfaces).
    """
    if camera.has_distortion:
        raise ValueError("render_view renders undistorted (pinhole) cameras only")
    s = max(1, int(supersample))
    cam = camera.scaled(s) if s > 1 else camera
    w2c = np.asarray(w2c, dtype=np.float64)
    d_cam, z_per_t = _pixel_rays(cam)
    dirs = d_cam @ w2c[:3, :3].astype(np.float32)  # rows: rot.T @ d, world directions
    colour, t = cast_rays(world, camera_center(w2c), dirs, _screen_candidates(world, cam, w2c))
    image = np.clip(_box_down(colour.reshape(cam.height, cam.width, 3), s) * 255.0 + 0.5, 0, 255)
    image = image.astype(np.uint8)
    if not return_depth:
        return image
    return image, _box_down((t * z_per_t).reshape(cam.height, cam.width), s)


def _box_down(array: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s pixel blocks of (s*H, s*W, ...) -> (H, W, ...)."""
    if s == 1:
        return array
    out = array[0::s, 0::s].copy()
    for i in range(s):
        for j in range(s):
            if i or j:
                out += array[i::s, j::s]
    return out / (s * s)


# ----------------------------------------------------------------------------------------------------------
# Cameras and surface points


def make_camera(options: SyntheticOptions) -> Camera:
    fx = 0.5 * options.width / math.tan(math.radians(options.fov_deg) / 2.0)
    return Camera("PINHOLE", options.width, options.height, fx, fx, options.width / 2.0, options.height / 2.0)


def _smooth_wobble(rng: np.random.Generator, t: np.ndarray, n_waves: int = 3) -> np.ndarray:
    """A smooth random function of t in [0, 1] with values in about [-1, 1] (sum of slow sinusoids)."""
    out = np.zeros_like(t)
    for _ in range(n_waves):
        out += np.sin(2 * math.pi * rng.uniform(0.4, 2.5) * t + rng.uniform(0, 2 * math.pi))
    return out / n_waves


def camera_path(options: SyntheticOptions) -> list[np.ndarray]:
    """World-to-camera poses (4, 4) along the orbit or the hand-held path of `options`."""
    n = options.n_views
    target = np.array([0.0, 0.0, options.target_height])
    if options.path == "orbit":
        angles = 2 * math.pi * np.arange(n) / n
        return [look_at_w2c([options.orbit_radius * math.cos(a), options.orbit_radius * math.sin(a),
                             options.camera_height], target) for a in angles]
    if options.path != "handheld":
        raise ValueError(f"unknown camera path {options.path!r}: use 'orbit' or 'handheld'")
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 0xCA4]))
    t = np.linspace(0.0, 1.0, n)
    j = options.handheld_jitter
    # Angular steps vary in speed but never reverse, like a person walking around the scene.
    steps = np.clip(1.0 + 0.45 * j * _smooth_wobble(rng, t) + 0.15 * j * rng.normal(size=n), 0.3, None)
    angles = rng.uniform(0, 2 * math.pi) + np.radians(options.handheld_arc_deg) * (np.cumsum(steps) - steps[0]) \
        / max(np.sum(steps) - steps[0], 1e-9)
    radius = options.orbit_radius * (1.0 + 0.12 * j * _smooth_wobble(rng, t))
    height = options.camera_height + 0.35 * j * _smooth_wobble(rng, t)
    look = target + 0.3 * j * np.stack([_smooth_wobble(rng, t) for _ in range(3)], axis=1) * [1, 1, 0.6]
    roll = np.radians(4.0) * j * _smooth_wobble(rng, t)
    poses = []
    for k in range(n):
        eye = np.array([radius[k] * math.cos(angles[k]), radius[k] * math.sin(angles[k]), height[k]])
        w2c = look_at_w2c(eye, look[k])
        c, s = math.cos(roll[k]), math.sin(roll[k])
        roll_m = np.eye(4)
        roll_m[:2, :2] = [[c, -s], [s, c]]
        poses.append(roll_m @ w2c)
    return poses


def sample_surface_points(world: World, n_points: int, rng: np.random.Generator,
                          object_fraction: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """True visible-surface points (N, 3) float64 and their shaded colours (N, 3) uint8.

    `object_fraction` of the points lie on the objects (by area), the rest on the room (by area, with the
    floor weighted up); floor points under an object are dropped, so N can be slightly below n_points.
    """
    objs = world.objects
    n_obj = int(round(n_points * object_fraction)) if objs else 0
    pts, normals, albedos = [], [], []

    def areas_obj(o):
        if isinstance(o, Sphere):
            return 4 * math.pi * o.radius**2
        if isinstance(o, Box):
            h = o.half
            return 4 * (h[0] * h[1] + 2 * h[2] * (h[0] + h[1]))  # five faces: not the bottom
        return 2 * math.pi * o.radius * o.height + math.pi * o.radius**2

    if n_obj:
        area = np.array([areas_obj(o) for o in objs])
        counts = rng.multinomial(n_obj, area / area.sum())
        for obj, m in zip(objs, counts):
            p = _sample_on_object(obj, int(m), rng)
            albedo, normal = _object_albedo_normal(obj, p)
            pts.append(p)
            normals.append(normal)
            albedos.append(albedo)
    s, h = world.room_half_size, world.room_height
    face_area = np.array([2 * s * h] * 4 + [4 * s * s, 4 * s * s]) * np.array([1, 1, 1, 1, 0.5, 3.0])
    counts = rng.multinomial(n_points - n_obj, face_area / face_area.sum())
    lo, hi = np.array([-s, -s, 0.0]), np.array([s, s, h])
    for f, m in enumerate(counts):
        _name, axis, sign, normal, _axes = _ROOM_FACES[f]
        p = lo + rng.random((int(m), 3)) * (hi - lo)
        p[:, axis] = hi[axis] if sign > 0 else lo[axis]
        if _name == "floor":
            p = p[~_inside_any(world, p + [0.0, 0.0, 1e-3])]
        pts.append(p)
        normals.append(np.broadcast_to(np.array(normal), p.shape))
        albedos.append(_room_albedo(world, f, p))
    points = np.concatenate(pts)
    colours = shade(world, np.concatenate(albedos), np.concatenate(normals).astype(np.float32))
    return points, np.clip(colours * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _sample_on_object(obj, m: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(obj, Sphere):
        d = rng.normal(size=(m, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return obj.center + obj.radius * d
    if isinstance(obj, Box):
        h = obj.half
        # Faces +x, -x, +y, -y, +z (no bottom), by area.
        face_area = np.array([h[1] * h[2], h[1] * h[2], h[0] * h[2], h[0] * h[2], h[0] * h[1]])
        face = rng.choice(5, size=m, p=face_area / face_area.sum())
        local = (rng.random((m, 3)) * 2 - 1) * h
        axis = np.array([0, 0, 1, 1, 2])[face]
        sign = np.array([1, -1, 1, -1, 1])[face]
        local[np.arange(m), axis] = sign * h[axis]
        return obj.center + local @ obj.rotation.T
    side_area, cap_area = 2 * math.pi * obj.radius * obj.height, math.pi * obj.radius**2
    on_side = rng.random(m) < side_area / (side_area + cap_area)
    phi = rng.uniform(0, 2 * math.pi, m)
    r = np.where(on_side, obj.radius, obj.radius * np.sqrt(rng.random(m)))
    z = np.where(on_side, rng.random(m) * obj.height, obj.height)
    return obj.base + np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _inside_any(world: World, points: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(points), bool)
    for obj in world.objects:
        if isinstance(obj, Sphere):
            inside |= np.linalg.norm(points - obj.center, axis=1) < obj.radius
        elif isinstance(obj, Box):
            local = (points - obj.center) @ obj.rotation
            inside |= np.all(np.abs(local) < obj.half, axis=1)
        else:
            local = points - obj.base
            inside |= (np.linalg.norm(local[:, :2], axis=1) < obj.radius) & (local[:, 2] >= 0) \
                & (local[:, 2] <= obj.height)
    return inside


# ----------------------------------------------------------------------------------------------------------
# The capture


def make_synthetic_capture(out_dir: Path, options: SyntheticOptions = SyntheticOptions()) -> Scene:
    """Render `options.n_views` views into `out_dir/images/0001.png ...` and write `out_dir/transforms.json`
    (with `points.ply`: true surface points and colours). Returns the scene as `read_transforms` reads it.
    """
    import cv2

    from splatforge.scene.transforms import write_transforms

    if options.image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', not {options.image_format!r}")
    if options.n_views < 1 or options.width < 8 or options.height < 8:
        raise ValueError("need at least one view of at least 8x8 pixels")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    world = build_world(options)
    camera = make_camera(options)
    params = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality] if options.image_format == "jpg" else []
    frames = []
    for k, w2c in enumerate(camera_path(options)):
        image = render_view(world, camera, w2c, supersample=options.supersample)
        path = image_dir / f"{k + 1:04d}.{options.image_format}"
        if not cv2.imwrite(str(path), image[:, :, ::-1], params):
            raise OSError(f"could not write {path}")
        frames.append(Frame(name=f"images/{path.name}", image=path, camera=camera, w2c=w2c))
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 0x9017]))
    points, colours = sample_surface_points(world, options.n_points, rng, options.object_fraction)
    scene = Scene(frames=frames, points=points, colors=colours,
                  meta={"synthetic": asdict(options), "world": world.describe()})
    write_transforms(scene, out_dir / "transforms.json", ply_file="points.ply")
    return scene
