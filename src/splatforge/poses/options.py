"""Options and result of the pose stage (pycolmap style: every knob named, sane defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

ENGINES = ("auto", "colmap", "vggt", "known")
MATCHING = ("auto", "sequential", "exhaustive", "retrieval")
MAPPERS = ("auto", "incremental", "global")
MAPPING_PRESETS = ("fast", "thorough")
BA_BACKENDS = ("ceres", "caspar")


@dataclass
class PoseOptions:
    """How camera poses are estimated. Defaults were chosen on the shared captures (docs/benchmarks-poses.md)."""

    engine: str = "auto"  # auto (the capture's own poses, poses/existing.py; else colmap) | colmap | vggt | known
    # --- features (SIFT) ---
    # longest side the features are extracted at. fox at 1280 instead of 1600: features -31 %, matching -40 %,
    # mapping -31 % CPU, median rotation error 0.182 instead of 0.189 degrees (docs/benchmarks-poses.md).
    # 1024 instead of 1280 (issue 17, 2 cores, process CPU s): fox ~2130 -> ~1500 SIFT per photo, features
    # 37 -> 26, matching 38 -> 26, mapping 21 -> 16, median / max rotation error 0.168 / 0.244 degrees
    # (0.178 / 0.253 at 1280); 800 px: 0.189 / 0.308, too close to the 0.2 bound. Photos of at most 1024 px
    # (fern, colosseum's frames) are not affected. The old features: max_image_size=1280 with the old values
    # of prescale, sequential_overlap and verify_max_trials below (docs/benchmarks.md "Pose stage feature
    # budget").
    max_image_size: int = 1024
    # Where the features at max_image_size leave photos out, they are extracted again at this size and the
    # capture mapped again; the pass placing more photos is kept (colmap_engine.reconstruct). On the H100
    # (GPU SIFT, GPU round 13) dtu_scan24 placed 48/49 at 1024 px, twice, and 49/49 at 1280; captures that
    # place every photo at 1024 px pay nothing. 0: one pass only.
    retry_image_size: int = 1280
    # An upper bound, not a target: COLMAP's CPU SIFT keeps whole octaves under it, so fox at 1280 px got the
    # same ~2130 features per photo with 2048 as with 4096. The image size is the lever on the CPU.
    max_num_features: int = 4096
    # Photos larger than max_image_size are shrunk with OpenCV (area averaging) before COLMAP reads them
    # (colmap_engine.prescale), instead of COLMAP decoding and resizing each full photo itself: fox's
    # features 28 -> 19 CPU s in the stage, same registration and accuracy. False: COLMAP's own resize.
    prescale: bool = True
    # SIFT's first octave. COLMAP's -1 doubles the image first (4x the pixels): ~2.5x slower for features that
    # only matter on small images. 0 when the photo's own longest side is >= `upsample_below`, else -1
    # (sacre_coeur's ~1080 px internet photos need them: 3/10 registered with 0, 10/10 with -1). Decided by
    # the photo, not by max_image_size: fox's 1920 px frames at 1024 px stay at 0.
    first_octave: int | None = None
    upsample_below: int = 1200
    # SIFT's first octave for the frames of a video (see `ordered`), whatever their size: neighbouring frames see
    # the same things at the same scale, so the doubled image's extra small features add observations, not
    # information. 60-frame synthetic hand-held sequence at 320x240 with reference poses, 2 cores, the whole
    # stage: 0.114 degrees median rotation error in 16.1 CPU s with 0, 0.104 in 65.9 with -1. colosseum's
    # 640x360 frames on the H100 (GPU round 14): 67 frames posed in 9.1 s instead of 30.3, 150 in 23.8-33.1
    # instead of 81.5, all placed (docs/benchmarks.md "Video frames at SIFT's first octave 0"). None: as for
    # photos (`first_octave`, `upsample_below`).
    video_first_octave: int | None = 0
    camera_model: str = "auto"  # auto: RADIAL when all photos share one camera, else SIMPLE_RADIAL
    single_camera: bool | None = None  # None: one shared camera when all images have the same size
    # --- matching ---
    matching: str = "auto"  # auto | sequential | exhaustive | retrieval
    ordered: bool | None = None  # None: ordered when the frames came from a video (frames.json)
    exhaustive_max_images: int = 120  # unordered sets up to this size are matched exhaustively
    # neighbours matched on each side in an ordered sequence. 5 instead of 10 (issue 17): fox 671 -> 477 pairs
    # (with the quadratic and loop-closure pairs below), matching -30 % CPU, 0.159 instead of 0.166 degrees;
    # dtu_scan24 still 49/49 (docs/benchmarks.md "Pose stage feature budget"). 10 gives the old pairs back.
    sequential_overlap: int = 5
    # sets of at most this many images are matched exhaustively, ordered or not (before issue 17 this was tied
    # to 2 x sequential_overlap + 1 = 21). 30: the 25-photo forward-facing test capture came out 0.52 degrees
    # from its reference with overlap 5 (bound 0.5), 0.42 with overlap 10, 0.45 with all 300 pairs.
    all_pairs_up_to: int = 30
    quadratic_overlap: bool = True  # also match frames 2^k apart (cheap loop closure along the sequence)
    loop_closure_neighbors: int = 5  # retrieval pairs per frame for far-apart frames (0: none)
    retrieval_neighbors: int = 25  # pairs per image for the `retrieval` scheme
    vocabulary_size: int = 256  # visual words of the on-the-fly retrieval vocabulary
    max_ratio: float = 0.8  # Lowe's ratio test
    min_num_inliers: int = 15  # verified matches for an image pair to count
    # RANSAC trials at most per pair in geometric verification (COLMAP: 10000). Fox at 1024 px, same matches:
    # verification 12.2 -> 9.2 CPU s, the same 578 verified pairs and inlier counts (median 116).
    verify_max_trials: int = 2000
    # ...and at least this many (COLMAP: 100), with the trial count RANSAC's confidence asks for multiplied by
    # `verify_trials_multiplier` (COLMAP: 3). None: 20 and 1.0 for photos, COLMAP's 100 and 3.0 for the frames of
    # a video. Verification fits three models (E, F, H) per pair, and with the inlier ratios of overlapping photos
    # the 100-trial floor and the 3x margin were most of its cost: fox on 2 cores, the stage's matching step
    # 18.2-19.4 -> 13.4-14.8 CPU s (descriptor matching alone: ~8.5), the same 476 verified pairs, the same median
    # rotation error (docs/benchmarks.md "Pose stage, 2026-11-28"). Video frames keep COLMAP's budget: their
    # low-parallax pairs are where the homography-or-not verdict decides the mapper's start, and one of two H100
    # runs of colosseum's 150 frames placed 126/150 with the smaller budget (150/150 in every run with COLMAP's).
    verify_min_trials: int | None = None
    verify_trials_multiplier: float | None = None
    # --- mapping ---
    # auto: incremental first (with a narrower starting pair when most verified pairs show little parallax),
    # global as the fallback (poses/colmap_engine.py `order_of_mappers` says why).
    mapper: str = "auto"  # auto | incremental | global
    fallback_min_registered: float = 0.8  # run the other mapper when fewer than this fraction registered
    # Where the incremental mapper leaves images out of its largest model, try those once more from the finished
    # model (colmap_engine.complete_model); the result is kept only when it places more. Off: on the H100 it placed
    # none of the left-out images in any run (colosseum-150 at 148-149/150, dtu_scan24 at 48/49), and it cost
    # 4.2 s of colosseum's 14.7 s of mapping once (docs/benchmarks.md, 2026-11-28, fourth session).
    retry_left_out: bool = False
    low_parallax_share: float = 0.5  # share of homography-explained pairs above which a capture is "low parallax"
    low_parallax_init_tri_angle: float = 4.0  # incremental mapper's starting-pair angle on such captures (COLMAP 16)
    global_min_inliers: int = 100  # pairs with fewer inliers (capped at the median) are left out of global mapping
    # Focal lengths from the matches (COLMAP's view-graph calibration) before global mapping. Off: it found
    # fox's focal (1381 px for 1376) but put the synthetic captures' at 179-180 px for 277 (the 16-view one
    # then 173 degrees off, the demo 17 s and no model) and the forward-facing one's at 140; without it the
    # global mapper was right on all four (docs/benchmarks-poses.md).
    global_calibrate: bool = False
    validate: bool = True  # check each model against the matches before trusting it (poses/validate.py)
    min_model_size: int = 3
    # Refine the principal point in bundle adjustment. None: when one camera is shared by >= 20 photos
    # (phone principal points sit ~15 px off-centre, which otherwise tilts every pose by ~0.6 degrees).
    refine_principal_point: bool | None = None
    # A refined principal point further from the centre than this share of the image's width or height is put
    # back at the centre and the model adjusted again (colmap_engine.recentre_drifted_principal_point). 0: never.
    principal_point_max_shift: float = 0.03
    # The incremental mapper keeps the camera's distortion fixed until its model has this many registered images
    # (at most half the photos, at least 3), then refines it in every bundle adjustment. 0: from the first
    # two-view bundle adjustment (COLMAP's way), which once fitted colosseum's 4-degree starting pair with k2
    # 1.28 and then registered nothing more. Colosseum: one model of 67/67 in 175 CPU s instead of two models
    # in 212; fox 0.176 degrees median (0.180 before); fern, dtu unchanged; but the forward-facing capture
    # with reference poses (tests/test_poses_real.py) went from 0.34 to 0.56 degrees median, so it is not the
    # default (docs/benchmarks-poses.md "Distortion schedule"). Try 10 on a video that registers poorly.
    fix_distortion_until: int = 0
    # Incremental mapper's speed. "fast": the bundle-adjustment settings below; "thorough": COLMAP's own
    # schedule and sizes (the ba_* fields below are then ignored; docs/benchmarks-poses.md "Mapping time").
    mapping_preset: str = "fast"  # fast | thorough
    # Global bundle adjustment after the model grew by this factor (COLMAP: 1.1), with at most this many
    # refinement rounds (COLMAP: 5 global, 2 local) and Ceres iterations (-1: COLMAP's 50 global, 25 local).
    # Fox, same matches, 2 threads: 1.4 and no iteration limit 26.1 CPU s, 0.181 degrees median rotation error;
    # 2.0 with 25/10 iterations 19.4 CPU s, 0.177 degrees (docs/benchmarks-poses.md "Mapping time").
    ba_global_ratio: float = 2.0
    ba_global_max_refinements: int = 2
    ba_local_max_refinements: int = 1
    ba_global_max_iterations: int = 25
    ba_local_max_iterations: int = 10
    ba_local_num_images: int = 6  # images optimised together in a local bundle adjustment (COLMAP: 6)
    # Photos: the incremental mapper's global bundle adjustments, while the model grows, stop once an iteration
    # lowers the cost by less than this fraction (Ceres' function_tolerance; COLMAP: 0, so each runs to its
    # iteration limit or gradient tolerance). Off by default: on, it is faster but less accurate on the H100.
    # fox's matches on 2 cores: mapping 8.7-12.5 -> 5.7-7.5 CPU s at 1e-3 (for local BAs too; local ones alone
    # gained nothing). On the H100 (GPU features differ run to run), fox's mapping went 4.1-5.1 -> 2.3-3.4 s, but
    # its median rotation error spread from 0.14-0.20 degrees (15 runs, 1 over issue 17's 0.2) to 0.10-0.24 (22
    # runs with 1e-3, 8 over), whatever the final refinement's tolerance below (docs/benchmarks.md "Pose stage,
    # 2026-11-28, second session"). Video frames have their own, `video_ba_function_tolerance`.
    ba_global_function_tolerance: float = 0.0
    # ...and once every image is placed (the final refinement), this one instead where it is smaller, for photos
    # and (`video_ba_function_tolerance`) video frames.
    ba_final_function_tolerance: float = 1e-4
    # Global BA leaves out points that add no coverage (COLMAP: off). Fox: -9 % mapping CPU but 0.198 instead
    # of 0.181 degrees: off.
    ba_skip_redundant_points: bool = False
    # Frames from a video (see `ordered`): the incremental mapper's global bundle adjustments stop once an
    # iteration lowers the cost by less than this fraction (Ceres' function_tolerance; COLMAP: 0, so every
    # global BA runs to its iteration limit). Measured on colosseum.mp4 (640x360, 2 threads): 16 of its 19
    # global BAs ran all 25 iterations without converging (0.3 % less cost per iteration, ~80 % of the mapping
    # CPU); at 1e-4 they stop after 2-3. Video only: photos have `ba_global_function_tolerance`, off.
    # 0: as for photos. docs/benchmarks.md "Mapping video frames". Not looser: 1e-3 (1e-4 once all 150 frames were
    # placed) took colosseum's 150 frames from 72.5 to 67.0 CPU s on 2 cores, with its focal length at 671 instead
    # of 615 px: this low-parallax orbit ties focal length and depth together only loosely (docs/benchmarks.md
    # "Pose stage, 2026-11-28, second session").
    video_ba_function_tolerance: float = 1e-4
    # Keyframes first (colmap_engine.map_keyframes_first): every n-th image is mapped first (n from the step down
    # to 2, the largest whose images are matched well among themselves: colmap_engine.keyframe_subset), then the
    # others are registered against that model and the model refined (place_remaining). 0 or 1: all in one go.
    # On for captures of `keyframes_from_images` or more: the one-go mapper's global bundle adjustments over long
    # tracks and its per-image local ones were most of the pose stage. H100 host, the whole pose step, one go
    # against this in the same call (docs/benchmarks.md, "Keyframes first, 2026-11-28" and "Pose stage,
    # 2026-11-28, fourth session"): colosseum's 150 video frames 21.6-24.5 s -> 11.4-15.5 s, all 150 placed;
    # fox 5.7-6.1 -> 4.6-5.7 s at 0.136-0.155 degrees median (one go 0.171-0.178).
    # Frames of a video in order; photos by name (capture order where names count up).
    video_keyframe_step: int = 3
    photo_keyframe_step: int = 3
    keyframes_from_images: int = 40
    # Threads in every bundle adjustment, not only those over 50000 residuals (COLMAP's threshold): less wall
    # time on many cores, slightly more CPU time.
    ba_threads_always: bool = False
    # Bundle adjustment on the GPU (Ceres' CUDA solver for problems of >= 50 images). None: as `use_gpu`. The
    # pycolmap-cuda12 4.2.1 wheel's Ceres has no CUDA (it says so and solves on the CPU): no effect there.
    ba_use_gpu: bool | None = None
    # Bundle adjustment solver: ceres (CPU, or Ceres' CUDA sparse solver with use_gpu) | caspar (COLMAP's GPU
    # bundle adjuster: needs a pycolmap built with it; an inexact solver). The pycolmap-cuda12 4.2.1 wheel has
    # none: its incremental mapper then places 0 photos and the stage falls back to the global mapper.
    ba_backend: str = "ceres"
    min_registered_fraction: float = 0.5  # fewer placed photos than this (or than 3) is a failure, not a model
    # --- known cameras / VGGT ---
    cameras: Path | None = None  # transforms.json | COLMAP folder | rig JSON/pickle: skip SfM
    triangulate: bool = False  # with `cameras`: match features and triangulate with the poses fixed
    vggt_weights: Path | None = None  # a checkpoint file, a local model folder, or a HF id in the local cache
    vggt_conf_threshold: float = 5.0  # keep depth points with VGGT confidence above this
    vggt_max_points: int = 100_000
    vggt_refine: bool = False  # pycolmap bundle adjustment of VGGT's poses (needs tracks: matches features)
    vggt_resolution: int = 518
    # --- output ---
    undistort: bool = True
    undistort_max_image_size: int = -1  # -1: keep the original resolution
    # --- machine ---
    num_threads: int = -1
    use_gpu: bool | None = None  # None: when pycolmap has CUDA and a GPU is visible
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cameras is not None:
            self.cameras = Path(self.cameras)
            if self.engine in ("auto", "colmap"):
                self.engine = "known"
        if self.vggt_weights is not None:
            self.vggt_weights = Path(self.vggt_weights)
        for name, value, allowed in (("engine", self.engine, ENGINES), ("matching", self.matching, MATCHING),
                                     ("mapper", self.mapper, MAPPERS),
                                     ("mapping_preset", self.mapping_preset, MAPPING_PRESETS),
                                     ("ba_backend", self.ba_backend, BA_BACKENDS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        for name in ("ba_global_function_tolerance", "ba_final_function_tolerance", "video_ba_function_tolerance",
                     "video_keyframe_step", "photo_keyframe_step", "keyframes_from_images",
                     "principal_point_max_shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or more, not {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PoseResult:
    """What the pose stage produced. `to_dict()` is poses.json and the `--json` output."""

    engine: str
    registered: int
    total: int
    unregistered: list[str]
    mean_reprojection_error: float | None
    points: int
    seconds: dict[str, float]  # wall seconds per sub-step
    model: Path
    transforms: Path | None = None
    images_undistorted: Path | None = None
    matching: str | None = None  # the scheme used and why
    mapper: str | None = None  # the mapper whose model was kept
    unregistered_reasons: dict[str, str] = field(default_factory=dict)
    other_models: list[dict] = field(default_factory=list)  # models not kept: sizes and image names
    notes: list[str] = field(default_factory=list)
    check: dict | None = None  # poses/validate.py ModelCheck of the kept model
    evidence: dict = field(default_factory=dict)  # what the matches showed and the mapper order it implied
    # process CPU seconds per sub-step (all threads; features/matching/mapping for the colmap engine only)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("model", "transforms", "images_undistorted"):
            out[key] = None if out[key] is None else str(out[key])
        return out
