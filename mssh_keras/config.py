"""Model and training configuration, and the named presets.

Presets are plain dataclass instances: the whole model family is one builder with a
handful of knobs, so there is no registry, only this table.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``schedule`` is the heatmap resolution of each stack, first to last."""
    input_size: int = 256
    schedule: tuple[int, ...] = (32, 32, 32, 64, 64, 64, 128, 128)
    filters: int = 256             # width of the hourglasses and heads
    block: str = "ira"             # residual | ira | irb
    fusion: str = "add"            # add | concat (dispatched map + previous stack)
    lateral: bool = False          # FPN-like top-down links in the pre-processing network
    min_resolution: int = 4        # every hourglass pools down to this size
    stem_filters: int = 64
    trunk_filters: int = 128
    num_joints: int = 14

    def __post_init__(self):
        if not self.schedule:
            raise ValueError("schedule must list at least one stack resolution")
        if self.num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {self.num_joints}")
        for r in self.schedule:
            if r < 2 * self.min_resolution or (r & (r - 1)):
                raise ValueError(f"stack resolution {r} must be a power of two >= "
                                 f"{2 * self.min_resolution}")
            if r > self.input_size // 2:
                raise ValueError(f"stack resolution {r} exceeds the stem's output "
                                 f"({self.input_size // 2}) for input {self.input_size}")
        if self.fusion not in ("add", "concat"):
            raise ValueError(f"fusion must be 'add' or 'concat', got {self.fusion!r}")

    @property
    def scales(self) -> tuple[int, ...]:
        """The distinct feature-map sizes the pre-processing network must produce."""
        return tuple(sorted(set(self.schedule)))

    def depth(self, resolution: int) -> int:
        return int(math.log2(resolution // self.min_resolution))

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class TrainConfig:
    adaptive: bool = True            # Algorithm 1 weighting; False = uniform 1/N
    sigma: float = 1.0               # Gaussian std in heatmap pixels, at every stack
    visible_amplitude: float = 1.0   # Eq. 1: +1 visible
    occluded_amplitude: float = -1.0  # Eq. 1: -1 occluded (0 or +1 also common)
    optimizer: str = "rmsprop"       # rmsprop (Newell and the paper) | adam | adamw
    learning_rate: float = 2.5e-4    # peak rate
    lr_schedule: str = "step"        # step: / 10 at lr_drops | cosine: warm-up, cosine to 0
    lr_drops: tuple[int, ...] = ()   # epochs after which the rate is divided by 10
    lr_drop_factor: float = 0.1
    warmup_steps: int = 0            # linear warm-up from 0 (cosine schedule)
    weight_decay: float = 0.0        # decoupled (adamw only)
    batch_size: int = 16
    epochs: int = 100

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.epochs < 0:  # 0 only scores the untrained network (library use; the CLI
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")  # wants >= 1)


OPTIMIZERS = ("rmsprop", "adam", "adamw")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)


# The lite presets' recipe, measured against the paper's RMSprop 2.5e-4 at equal images
# on LSPET (docs/training.md, "Recipe"): Adam, linear warm-up to 2e-3, cosine decay to 0
# over the run, targets of sigma 1.5 heatmap pixels; 60 epochs of LSPET's 6,300 training
# people (~380k images).
LITE_RECIPE = TrainConfig(optimizer="adam", learning_rate=2e-3, lr_schedule="cosine",
                          warmup_steps=300, sigma=1.5, batch_size=16, epochs=60)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mssh-8", "The paper: 8 IR-A stacks at 256x256, scales 32->64->128, adaptive loss.",
           ModelConfig(), TrainConfig(lr_drops=(150, 170), epochs=200, batch_size=8)),
    Preset("hg-8", "Newell's 8-stack hourglass: 64x64 at every stack, residual blocks, "
                   "uniform loss.",
           ModelConfig(schedule=(64,) * 8, block="residual"),
           TrainConfig(adaptive=False, occluded_amplitude=1.0, lr_drops=(150, 170),
                       epochs=200, batch_size=8)),
    Preset("mssh-lite", "CPU-sized MSSH: 128x128 input, 4 IR-A stacks over 16->32->64, "
                        "48 filters (0.63 GFLOPs, as hg-lite).",
           ModelConfig(input_size=128, schedule=(16, 32, 32, 64), filters=48, stem_filters=32,
                       trunk_filters=64),
           LITE_RECIPE),
    Preset("hg-lite", "CPU-sized hourglass baseline of about mssh-lite's FLOPs: 32x32 at "
                      "every stack, residual blocks, uniform loss.",
           ModelConfig(input_size=128, schedule=(32,) * 4, filters=64, block="residual",
                       stem_filters=32, trunk_filters=64),
           dataclasses.replace(LITE_RECIPE, adaptive=False, occluded_amplitude=1.0)),
    # hg-lite scores 71 % PCK@0.2 on its own training people and 64.5 % on validation
    # (under-fitting), and at 0.52x BlazePose-full's latency it leaves room: the widest
    # hourglass under 1.0x (TFLite fp32, 2 threads, side by side; benchmarks/README.md).
    Preset("hg-wide", "hg-lite at 96 filters: 1.14 GFLOPs (1.9x hg-lite), the widest "
                      "hourglass within BlazePose-full's latency.",
           ModelConfig(input_size=128, schedule=(32,) * 4, filters=96, block="residual",
                       stem_filters=32, trunk_filters=64),
           dataclasses.replace(LITE_RECIPE, adaptive=False, occluded_amplitude=1.0)),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
