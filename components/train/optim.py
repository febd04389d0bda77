"""Optimizers, learning-rate schedules and the classification loss.

Schedules are `keras.optimizers.schedules.LearningRateSchedule` subclasses registered
with Keras serialization, so a model saved with its optimizer reloads them. All of
them share one linear warmup: from `initial_lr` at step 0 to `base_lr` at
`warmup_steps`, then their own shape:

| kind        | after warmup                                                                   |
|-------------|--------------------------------------------------------------------------------|
| `constant`  | `base_lr`                                                                      |
| `cosine`    | cosine from `base_lr` to `min_lr` (default 0) at `total_steps`, then `min_lr`   |
| `one_cycle` | warmup from `base_lr / div_factor` (30% of the steps by default), then cosine to `base_lr / (div_factor * final_div_factor)` |
| `step`      | `base_lr * decay ** (boundaries passed)`; boundaries default to 50% and 75% of `total_steps` |

Example:

```python
schedule = build_schedule("cosine", 0.1, total_steps=10_000, warmup_steps=500)
optimizer = build_optimizer("sgd", schedule, weight_decay=5e-4, nesterov=True)
model.compile(optimizer=optimizer, loss=build_loss(label_smoothing=0.1), metrics=["accuracy"])
```
"""
from __future__ import annotations

import math

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "one_cycle", "step")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Schedule-specific keyword arguments of build_schedule.
SCHEDULE_KWARGS = {
    "constant": {},
    "cosine": {"min_lr": 0.0},
    "one_cycle": {"div_factor": 25.0, "final_div_factor": 1e4},
    "step": {"boundaries": None, "decay": 0.1},
}
DEFAULT_STEP_FRACTIONS = (0.5, 0.75)  # step decay boundaries as fractions of total_steps
ONE_CYCLE_WARMUP_FRACTION = 0.3  # PyTorch's OneCycleLR pct_start default
ADAMW_DEFAULT_WEIGHT_DECAY = 0.01  # PyTorch's AdamW default
# Biases and BatchNorm scales/offsets are not decayed (standard practice; decaying them hurts).
# Regexes on variable names: Keras names ("bias") and, on the TF backend, the tf.Variable
# names the optimizer actually sees ("model/dense/bias:0").
NO_DECAY_VARIABLES = [r"(^|/)(bias|gamma|beta)(:\d+)?$"]


class _LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `initial_lr` to `base_lr` over `warmup_steps`, then `_after_warmup`."""

    def __init__(self, base_lr: float, warmup_steps: int = 0, initial_lr: float = 0.0):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.initial_lr = float(initial_lr)

    def _after_warmup(self, step):
        raise NotImplementedError

    def __call__(self, step):
        step = ops.cast(step, "float32")
        after = self._after_warmup(step)
        if self.warmup_steps == 0:
            return after
        warm = self.initial_lr + (self.base_lr - self.initial_lr) * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps, "initial_lr": self.initial_lr}


@keras.saving.register_keras_serializable(package="pipeline")
class WarmupConstant(_LinearWarmup):
    """`base_lr` after the warmup.

    Example: `WarmupConstant(1e-3, warmup_steps=100)(50)` -> 5e-4.
    """

    def _after_warmup(self, step):
        return ops.full_like(step, self.base_lr)


@keras.saving.register_keras_serializable(package="pipeline")
class WarmupCosine(_LinearWarmup):
    """Cosine decay from `base_lr` (at `warmup_steps`) to `min_lr` (at `total_steps`).

    Example: `WarmupCosine(0.1, total_steps=1000, warmup_steps=100)(550)` -> 0.05.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0, initial_lr: float = 0.0, min_lr: float = 0.0):
        super().__init__(base_lr, warmup_steps, initial_lr)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)

    def _after_warmup(self, step):
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + ops.cos(math.pi * progress))

    def get_config(self):
        return {**super().get_config(), "total_steps": self.total_steps, "min_lr": self.min_lr}


@keras.saving.register_keras_serializable(package="pipeline")
class WarmupStepDecay(_LinearWarmup):
    """`base_lr * decay ** k` after passing `k` of the (absolute, increasing) `boundaries`.

    Boundaries inside the warmup take effect when the warmup ends.

    Example: `WarmupStepDecay(0.1, boundaries=[100, 150], decay=0.1)(120)` -> 0.01.
    """

    def __init__(self, base_lr: float, boundaries, decay: float = 0.1, warmup_steps: int = 0, initial_lr: float = 0.0):
        super().__init__(base_lr, warmup_steps, initial_lr)
        self.boundaries = [int(b) for b in boundaries]
        self.decay = float(decay)

    def _after_warmup(self, step):
        passed = sum(ops.cast(step >= b, "float32") for b in self.boundaries) if self.boundaries else ops.zeros_like(step)
        return self.base_lr * ops.power(self.decay, passed)

    def get_config(self):
        return {**super().get_config(), "boundaries": self.boundaries, "decay": self.decay}


def build_schedule(kind: str, base_lr: float, total_steps: int, warmup_steps: int = 0, **kwargs) -> _LinearWarmup:
    """A learning-rate schedule by name (see the module table for the shapes).

    Args:
        kind: one of "constant", "cosine", "one_cycle", "step".
        base_lr: the peak learning rate (reached at the end of the warmup).
        total_steps: optimizer steps of the whole run (epochs * steps per epoch).
        warmup_steps: linear warmup steps (0 = none; for one_cycle 0 means 30%).
        **kwargs: cosine: `min_lr`; one_cycle: `div_factor`, `final_div_factor`;
            step: `boundaries` (absolute steps), `decay`.

    Example:

    ```python
    build_schedule("step", 0.1, total_steps=64_000, boundaries=[32_000, 48_000], decay=0.1)
    ```
    """
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {kind!r}. Allowed: {', '.join(SCHEDULES)}.")
    unknown = sorted(set(kwargs) - set(SCHEDULE_KWARGS[kind]))
    if unknown:
        allowed = ", ".join(SCHEDULE_KWARGS[kind]) or "(none)"
        raise ValueError(f"Unknown argument(s) {', '.join(map(repr, unknown))} for schedule {kind!r}. Allowed: {allowed}.")
    if not base_lr > 0:
        raise ValueError(f"base_lr must be > 0, got {base_lr!r}.")
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1 (epochs * steps per epoch), got {total_steps!r}.")
    if not 0 <= int(warmup_steps) <= int(total_steps):
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps!r}.")
    opts = {**SCHEDULE_KWARGS[kind], **kwargs}

    if kind == "constant":
        return WarmupConstant(base_lr, warmup_steps)
    if kind == "cosine":
        return WarmupCosine(base_lr, total_steps, warmup_steps, min_lr=opts["min_lr"])
    if kind == "one_cycle":
        # One cycle = warm up from base/div, then anneal far below it: a cosine with a
        # non-zero start and floor, so it reuses WarmupCosine.
        div, final_div = float(opts["div_factor"]), float(opts["final_div_factor"])
        if div < 1 or final_div < 1:
            raise ValueError(f"one_cycle: div_factor and final_div_factor must be >= 1, got {div!r}, {final_div!r}.")
        warmup = int(warmup_steps) or max(1, int(ONE_CYCLE_WARMUP_FRACTION * int(total_steps)))
        return WarmupCosine(base_lr, total_steps, warmup, initial_lr=base_lr / div, min_lr=base_lr / (div * final_div))
    boundaries = opts["boundaries"]
    if boundaries is None:
        # De-duplicated so short runs (a few steps) still get a valid default.
        boundaries = sorted({max(1, int(f * int(total_steps))) for f in DEFAULT_STEP_FRACTIONS})
    boundaries = [int(b) for b in boundaries]
    if boundaries != sorted(set(boundaries)) or (boundaries and boundaries[0] < 1):
        raise ValueError(f"step: boundaries must be strictly increasing positive steps, e.g. [1000, 1500]; got {boundaries!r}.")
    if not 0 < float(opts["decay"]) <= 1:
        raise ValueError(f"step: decay must be in (0, 1] (the factor applied at each boundary), got {opts['decay']!r}.")
    return WarmupStepDecay(base_lr, boundaries, opts["decay"], warmup_steps)


def build_optimizer(
    name: str,
    learning_rate_schedule,
    weight_decay: float | None = None,
    momentum: float | None = None,
    nesterov: bool = False,
) -> keras.optimizers.Optimizer:
    """An optimizer by name, with decoupled weight decay where it is defined.

    Args:
        name: "sgd", "adam" or "adamw".
        learning_rate_schedule: a `LearningRateSchedule` or a float.
        weight_decay: decoupled decay (`w -= lr * weight_decay * w` each step), not applied
            to biases and BatchNorm parameters. sgd: default 0; adamw: default 0.01;
            adam: must be 0/None (Adam with decay *is* adamw: use "adamw", or the models'
            L2 `weight_decay` hyperparameter).
        momentum: sgd momentum (default 0.9); for adam/adamw it is beta_1 (default 0.9).
        nesterov: Nesterov momentum (sgd only).

    Example:

    ```python
    build_optimizer("adamw", build_schedule("one_cycle", 3e-3, total_steps=2000), weight_decay=0.05)
    ```
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}. Allowed: {', '.join(OPTIMIZERS)}.")
    if momentum is not None and not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
    if weight_decay is not None and float(weight_decay) < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    if nesterov and name != "sgd":
        raise ValueError(f"nesterov applies to 'sgd' only, not {name!r}; drop nesterov=True or use 'sgd'.")

    if name == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate_schedule,
            momentum=0.9 if momentum is None else float(momentum),
            nesterov=nesterov,
            weight_decay=weight_decay or None,
        )
    elif name == "adam":
        if weight_decay:
            raise ValueError(
                f"adam takes no weight_decay (got {weight_decay!r}): use 'adamw' for decoupled decay, "
                "or the model's L2 weight_decay hyperparameter."
            )
        optimizer = keras.optimizers.Adam(learning_rate_schedule, beta_1=0.9 if momentum is None else float(momentum))
    else:
        optimizer = keras.optimizers.AdamW(
            learning_rate_schedule,
            weight_decay=ADAMW_DEFAULT_WEIGHT_DECAY if weight_decay is None else float(weight_decay),
            beta_1=0.9 if momentum is None else float(momentum),
        )
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_VARIABLES)
    return optimizer


@keras.saving.register_keras_serializable(package="pipeline")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy from logits for integer labels, with label smoothing.

    Keras' SparseCategoricalCrossentropy has no `label_smoothing`, so the integer labels
    are one-hot encoded (depth = number of logits) and CategoricalCrossentropy's smoothing
    applies: targets become `(1 - s) * one_hot + s / K`.

    Example:

    ```python
    loss = SparseCategoricalCrossentropyWithSmoothing(0.1)
    loss([2], [[0.0, 1.0, 3.0]])
    ```
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "sparse_categorical_crossentropy_smoothed", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        # Labels arrive as [N] or [N, 1]; one_hot needs them shaped like y_pred minus its last axis.
        labels = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        targets = ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=True, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_loss(label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Cross-entropy from logits for integer labels (the zoo's models output logits).

    `label_smoothing == 0`: Keras' SparseCategoricalCrossentropy(from_logits=True).
    `> 0`: `SparseCategoricalCrossentropyWithSmoothing` (one-hot + categorical CE), since
    the sparse loss has no smoothing option.

    Example:

    ```python
    model.compile(optimizer="adam", loss=build_loss(0.1), metrics=["accuracy"])
    ```
    """
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1) (typical: 0.1), got {label_smoothing!r}.")
    if label_smoothing == 0:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return SparseCategoricalCrossentropyWithSmoothing(label_smoothing)
