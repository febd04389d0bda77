"""The `train:` config section: its one schema (keys, types, defaults, allowed values, checks).

pipeline/config.py generates its `train` SCHEMA entries from `TrainConfig` and runs its checks,
so a default or a rule is written once. Import-free apart from the standard library.

    TrainConfig.from_dict({"epochs": 5}).batch_size   # 64
    TrainConfig.from_dict({"epochs": 0})              # TrainConfigError: 'epochs' ... expected an integer >= 1
"""
from __future__ import annotations

import dataclasses

from components.config_section import NUMBER, ConfigSection, SectionError, field

# A typo guard, far above real schedules (ResNets run 90-200 epochs, ViTs 300, small-data
# runs a few thousand): 10**12 epochs is a run that never ends, not an experiment.
MAX_EPOCHS = 100_000


class TrainConfigError(SectionError):
    """A bad `train` value: `key`, `value` and `want` (what is allowed)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigSection):
    SECTION = "train"
    ERROR = TrainConfigError

    epochs: int = field(30, (int,))
    batch_size: int = field(64, (int,))
    optimizer: str = field("adam", (str,), ("sgd", "adam", "adamw"))
    learning_rate: float = field(1e-3, NUMBER)
    weight_decay: float = field(0.0, NUMBER)
    momentum: float = field(0.9, NUMBER)
    nesterov: bool = field(False, (bool,))  # sgd only
    schedule: str = field("cosine", (str,), ("constant", "cosine", "one_cycle", "step"))
    # cosine: min_lr; one_cycle: div_factor, final_div_factor; step: boundaries (optimizer steps), decay
    schedule_args: dict = field({}, (dict,))  # checked by the real schedule builder (components/train/optim.py)
    warmup_epochs: float = field(1, NUMBER)
    label_smoothing: float = field(0.0, NUMBER)
    precision: str = field("auto", (str,), ("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    jit_compile: bool = field(False, (bool,))
    early_stopping_patience: int | None = field(None, (int, type(None)))  # epochs, on val_accuracy
    checkpoint_every_steps: int = field(100, (int,))
    seed: int = field(0, (int,))
    augmentation: dict = field({}, (dict,))  # checked by AugmentationPolicy (components/train/augment.py)

    def check(self) -> None:
        for key in ("epochs", "batch_size", "checkpoint_every_steps"):
            if getattr(self, key) < 1:
                raise self.fail(key, getattr(self, key), "expected an integer >= 1")
        if self.epochs > MAX_EPOCHS:
            raise self.fail("epochs", self.epochs, f"expected at most {MAX_EPOCHS:,} (a typo? long schedules run a few thousand)")
        if self.learning_rate <= 0:
            raise self.fail("learning_rate", self.learning_rate, "expected a finite number > 0")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise self.fail("warmup_epochs", self.warmup_epochs, f"expected a number in [0, train.epochs = {self.epochs}]")
        if not 0 <= self.label_smoothing < 1:
            raise self.fail("label_smoothing", self.label_smoothing, "expected a number in [0, 1)")
