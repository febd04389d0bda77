"""Numeric precision and distribution strategy for training.

`auto` picks mixed_float16 only where it pays: an NVIDIA GPU of compute capability
>= 7.0 (Volta and later have float16 tensor cores). Elsewhere it picks float32, and says
why. It never picks mixed_bfloat16 on its own: on CPUs without bfloat16 matrix units it
is slower than float32, so it is an explicit opt-in.

Example:

```python
choice = apply_precision("auto")          # PrecisionChoice(policy="float32", reason="no GPU visible")
optimizer = wrap_optimizer(keras.optimizers.Adam(1e-3), choice.policy)
strategy, description = select_strategy()
with strategy.scope():
    model = create_model("digits_cnn", (8, 8, 1), 10)
```
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import keras
import tensorflow as tf

POLICIES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
MIN_FLOAT16_CAPABILITY = (7, 0)  # tensor cores: Volta (7.0) and later


class PrecisionChoice(NamedTuple):
    """The policy applied and a human-readable reason for it."""

    policy: str
    reason: str


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"Unknown precision policy {policy!r}. Allowed: {', '.join(POLICIES)}.")


def _gpu_capabilities() -> list[tuple[str, tuple[int, int] | None]]:
    """(device name, compute capability or None) for each visible GPU."""
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device) or {}
        gpus.append((details.get("device_name", device.name), details.get("compute_capability")))
    return gpus


def explain_precision(policy: str) -> PrecisionChoice:
    """Resolve `policy` ("auto" included) to a concrete Keras policy, with the reason."""
    _check_policy(policy)
    if policy != "auto":
        return PrecisionChoice(policy, "requested explicitly")
    gpus = _gpu_capabilities()
    if not gpus:
        return PrecisionChoice("float32", "no GPU visible")
    capable = [(name, cc) for name, cc in gpus if cc is not None and tuple(cc) >= MIN_FLOAT16_CAPABILITY]
    if capable:
        name, cc = capable[0]
        return PrecisionChoice("mixed_float16", f"GPU {name} has compute capability {cc[0]}.{cc[1]} (>= 7.0)")
    found = ", ".join(f"{name} ({'unknown' if cc is None else f'{cc[0]}.{cc[1]}'})" for name, cc in gpus)
    return PrecisionChoice("float32", f"no GPU with compute capability >= 7.0 (found {found})")


def resolve_precision(policy: str) -> str:
    """The concrete policy for `policy`: "float32", "mixed_float16" or "mixed_bfloat16".

    Example:

    ```python
    resolve_precision("auto")  # "float32" on a machine without a recent NVIDIA GPU
    ```
    """
    return explain_precision(policy).policy


def apply_precision(policy: str) -> PrecisionChoice:
    """Resolve `policy` and set it as the Keras global dtype policy.

    Layers built afterwards compute in the policy's dtype; the models' "logits" layer is
    float32 regardless. Returns `PrecisionChoice(policy, reason)`.

    Example:

    ```python
    policy, reason = apply_precision("auto")
    print(f"precision: {policy} ({reason})")
    ```
    """
    choice = explain_precision(policy)
    keras.mixed_precision.set_global_policy(choice.policy)
    return choice


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, policy: str) -> keras.optimizers.Optimizer:
    """Wrap `optimizer` in a dynamic `LossScaleOptimizer` under mixed_float16.

    float16 gradients underflow without loss scaling. Keras' `Model.compile` also wraps
    implicitly under a mixed_float16 global policy; doing it explicitly keeps custom
    training loops correct and makes the choice visible. bfloat16 has float32's
    exponent range and needs no scaling. Already-wrapped optimizers are returned as is.

    Example:

    ```python
    optimizer = wrap_optimizer(keras.optimizers.SGD(0.1), "mixed_float16")
    ```
    """
    policy = resolve_precision(policy)
    if policy == "mixed_float16" and not isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def strategy_kind(tf_config: str | None, num_gpus: int) -> str:
    """Which strategy fits: "multi_worker" (TF_CONFIG with a non-empty cluster),
    "mirrored" (> 1 GPU) or "default". Pure, so the choice is testable without a cluster."""
    if tf_config:
        try:
            config = json.loads(tf_config)
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e}); set it to e.g. "
                             '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}} '
                             "or unset it.") from e
        if not isinstance(config, dict):
            raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task'; got {tf_config!r}.")
        if config.get("cluster"):
            return "multi_worker"
    return "mirrored" if num_gpus > 1 else "default"


def select_strategy() -> tuple[tf.distribute.Strategy, str]:
    """The distribution strategy for this process, with a one-line description.

    MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, MirroredStrategy over all
    GPUs when there are several, the default (single-device) strategy otherwise. Call it
    before building the model and build inside `strategy.scope()`.
    """
    gpus = tf.config.list_physical_devices("GPU")
    kind = strategy_kind(os.environ.get("TF_CONFIG"), len(gpus))
    if kind == "multi_worker":
        cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
        workers = sum(len(v) for v in cluster.values())
        return tf.distribute.MultiWorkerMirroredStrategy(), f"MultiWorkerMirroredStrategy over {workers} tasks (from TF_CONFIG)"
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(), f"MirroredStrategy over {len(gpus)} GPUs"
    device = "1 GPU" if gpus else "CPU"
    return tf.distribute.get_strategy(), f"default strategy (single device: {device})"
