"""Render and keyframe settings: plain dataclasses shared by the launcher and the Blender job.

The defaults are the paper's settings (T=30 keyframes at most 3 source frames apart, 4 orthogonal
256x256 views, random environment light) with a CPU-friendly engine; pipelines.yaml overrides them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

ENGINES = ("cycles", "eevee", "workbench")
SHORT_CLIP_POLICIES = ("subframes", "reject")
BUNDLED_HDRIS = ("city.exr", "courtyard.exr", "forest.exr", "interior.exr", "night.exr",
                 "studio.exr", "sunrise.exr", "sunset.exr")


@dataclass
class KeyframeSettings:
    count: int = 30                 # T keyframes per clip
    max_spacing: int = 3            # consecutive keyframes at most this many source frames apart
    short_clip: str = "subframes"   # clips with fewer than `count` source frames: subframes | reject
    min_source_frames: int = 8      # below this a clip is rejected as too short under either policy
    # where the window sits: "motion", the offset whose frames move most (the same span as "random");
    # "random", the paper's uniform offset
    selection: str = "motion"
    windows_per_animation: int = 1  # up to this many non-overlapping windows (clips) per animation

    def validate(self) -> None:
        if self.count < 2 or self.max_spacing < 1 or self.min_source_frames < 2:
            raise ValueError("keyframes: count >= 2, max_spacing >= 1 and min_source_frames >= 2 required")
        if self.selection not in ("random", "motion"):
            raise ValueError(f"keyframes.selection must be random or motion, got {self.selection!r}")
        if self.windows_per_animation < 1:
            raise ValueError(f"keyframes.windows_per_animation must be >= 1, got {self.windows_per_animation}")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise ValueError(f"keyframes.short_clip must be one of {SHORT_CLIP_POLICIES}, got {self.short_clip!r}")


@dataclass
class LightSettings:
    hdris: list[str] = field(default_factory=lambda: list(BUNDLED_HDRIS))
    strength: list[float] = field(default_factory=lambda: [0.7, 1.3])       # uniform range
    rotation_deg: list[float] = field(default_factory=lambda: [0.0, 360.0])  # uniform range, about up


@dataclass
class RenderSettings:
    engine: str = "cycles"
    device: str = "CPU"             # CPU | GPU (Cycles; GPU picks CUDA/OptiX/HIP/Metal as available)
    samples: int = 16
    denoise: bool = True
    # OIDN's ACCURATE prefilter denoises the albedo and normal passes too: 3 filter runs per image,
    # about half of a 256x256 16-sample image's time on a CPU; FAST uses them as rendered.
    denoise_prefilter: str = "FAST"  # NONE | FAST | ACCURATE
    resolution: int = 256
    views: int = 4                  # azimuths 0, 360/views, ... (4: 0/90/180/270)
    elevation_deg: float = 0.0
    fov_deg: float = 40.0
    volume_size: float = 1.5        # side of the cube (normalized units) every camera frames whole
    timeout_s: float = 900.0        # per asset, enforced by the launcher
    threads: int = 0                # CPU render threads; 0 = all (the pipeline sets its per-task CPUs)
    light: LightSettings = field(default_factory=LightSettings)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"render.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.device not in ("CPU", "GPU"):
            raise ValueError(f"render.device must be CPU or GPU, got {self.device!r}")
        if self.denoise_prefilter not in ("NONE", "FAST", "ACCURATE"):
            raise ValueError(f"render.denoise_prefilter must be NONE, FAST or ACCURATE, got {self.denoise_prefilter!r}")
        for name in ("samples", "resolution", "views"):
            if getattr(self, name) < 1:
                raise ValueError(f"render.{name} must be >= 1, got {getattr(self, name)}")
        if self.volume_size < 1.0:
            raise ValueError("render.volume_size must be >= 1 (the first keyframe fills the unit cube)")
        unknown = sorted(set(self.light.hdris) - set(BUNDLED_HDRIS))
        if unknown or not self.light.hdris:
            raise ValueError(f"render.light.hdris must be a non-empty subset of {BUNDLED_HDRIS}, "
                             f"unknown: {unknown}")


@dataclass
class JobSettings:
    """Everything one Blender job needs besides the asset path."""
    render: RenderSettings = field(default_factory=RenderSettings)
    keyframes: KeyframeSettings = field(default_factory=KeyframeSettings)
    seed: int = 0
    # Rules to run on a clip's vertices before it is rendered: {"module": a module with
    # `gate(clip, settings) -> {"rule": ..., "results": [...]}`, "settings": its settings}; {} = none.
    # Named, not imported here: the caller (the pipeline) owns the rules, the renderer only asks.
    gate: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "JobSettings":
        r = dict(d["render"])
        r["light"] = LightSettings(**r["light"])
        return cls(render=RenderSettings(**r), keyframes=KeyframeSettings(**d["keyframes"]),
                   seed=int(d["seed"]), gate=dict(d.get("gate") or {}))
