"""The `train:` config section: its one schema (keys, types, defaults, allowed values, checks).

pipeline/config.py generates its `train` SCHEMA entries from `TrainConfig` and runs `check`,
so a default or a rule is written once. Import-free apart from the standard library.

    TrainConfig.from_dict({"epochs": 5}).batch_size   # 64
    TrainConfig.from_dict({"epochs": 0})              # TrainConfigError: 'epochs' ... expected an integer >= 1
"""
from __future__ import annotations

import dataclasses

# A typo guard, far above real schedules (ResNets run 90-200 epochs, ViTs 300, small-data
# runs a few thousand): 10**12 epochs is a run that never ends, not an experiment.
MAX_EPOCHS = 100_000
NUMBER = (float, int)


def _field(default, types, allowed=None, **kwargs):
    """A section field: its default and the types / allowed values the config may give."""
    if isinstance(default, (dict, list)):
        factory = type(default)
        return dataclasses.field(default_factory=lambda: factory(default), metadata={"types": types, "allowed": allowed}, **kwargs)
    return dataclasses.field(default=default, metadata={"types": types, "allowed": allowed}, **kwargs)


class TrainConfigError(ValueError):
    """A bad `train` value: `key`, `value` and `want` (what is allowed)."""

    def __init__(self, key: str, value, want: str):
        self.key, self.value, self.want = key, value, want
        super().__init__(f"train key '{key}' has bad value {value!r}: {want}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = _field(30, (int,))
    batch_size: int = _field(64, (int,))
    optimizer: str = _field("adam", (str,), ("sgd", "adam", "adamw"))
    learning_rate: float = _field(1e-3, NUMBER)
    weight_decay: float = _field(0.0, NUMBER)
    momentum: float = _field(0.9, NUMBER)
    nesterov: bool = _field(False, (bool,))  # sgd only
    schedule: str = _field("cosine", (str,), ("constant", "cosine", "one_cycle", "step"))
    # cosine: min_lr; one_cycle: div_factor, final_div_factor; step: boundaries (optimizer steps), decay
    schedule_args: dict = _field({}, (dict,))  # checked by the real schedule builder (components/train/optim.py)
    warmup_epochs: float = _field(1, NUMBER)
    label_smoothing: float = _field(0.0, NUMBER)
    precision: str = _field("auto", (str,), ("auto", "float32", "mixed_float16", "mixed_bfloat16"))
    jit_compile: bool = _field(False, (bool,))
    early_stopping_patience: int | None = _field(None, (int, type(None)))  # epochs, on val_accuracy
    checkpoint_every_steps: int = _field(100, (int,))
    seed: int = _field(0, (int,))
    augmentation: dict = _field({}, (dict,))  # checked by AugmentationPolicy (components/train/augment.py)

    @classmethod
    def schema(cls) -> dict[str, tuple]:
        """{key: (types, default, allowed-values-or-None)}: the form pipeline/config.py's SCHEMA uses."""
        defaults = dataclasses.asdict(cls())
        return {f.name: (f.metadata["types"], defaults[f.name], f.metadata["allowed"]) for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, section: dict) -> "TrainConfig":
        """Range checks on a type-checked section (pipeline/config.py's `_check` checks types and allowed values)."""
        config = cls(**section)
        config.check()
        return config

    def check(self) -> None:
        for key in ("epochs", "batch_size", "checkpoint_every_steps"):
            if getattr(self, key) < 1:
                raise TrainConfigError(key, getattr(self, key), "expected an integer >= 1")
        if self.epochs > MAX_EPOCHS:
            raise TrainConfigError("epochs", self.epochs, f"expected at most {MAX_EPOCHS:,} (a typo? long schedules run a few thousand)")
        if self.learning_rate <= 0:
            raise TrainConfigError("learning_rate", self.learning_rate, "expected a finite number > 0")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise TrainConfigError("warmup_epochs", self.warmup_epochs, f"expected a number in [0, train.epochs = {self.epochs}]")
        if not 0 <= self.label_smoothing < 1:
            raise TrainConfigError("label_smoothing", self.label_smoothing, "expected a number in [0, 1)")
