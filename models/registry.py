"""The model registry: one name -> one builder plus its default hyperparameters.

Families register their builders with `@register_model(name, **defaults)`; callers build
them with `create_model(name, input_spec, num_classes, **hparams)`. Only hyperparameters
named in the defaults are accepted, so a typo fails loudly instead of being ignored.

Example:

```python
from models import create_model, list_models

model = create_model("resnet20", (32, 32, 3), num_classes=10, dropout=0.1)
print(sorted(list_models()))
```
"""
from __future__ import annotations

from typing import Any, Callable

import keras

Builder = Callable[..., keras.Model]

# name -> (builder, defaults). Filled by the family modules when `models` is imported.
_REGISTRY: dict[str, tuple[Builder, dict[str, Any]]] = {}


def register_model(name: str, **defaults: Any) -> Callable[[Builder], Builder]:
    """Register `builder(input_spec, num_classes, **hparams)` under `name`.

    The decorator returns the builder unchanged, so one builder can be registered under
    several names with different defaults (stack the decorators).

    Example:

    ```python
    @register_model("tiny_mlp", units=32, dropout=0.0)
    def tiny_mlp(input_spec, num_classes, *, units, dropout):
        ...
    ```
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Model name {name!r} is not valid: use letters, digits and underscores, e.g. 'resnet20'.")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"Model {name!r} is already registered; pick another name.")
        _REGISTRY[name] = (builder, dict(defaults))
        return builder

    return decorator


def list_models() -> dict[str, dict[str, Any]]:
    """All registered models: `{name: default hyperparameters}` (a copy; safe to edit)."""
    return {name: dict(defaults) for name, (_, defaults) in sorted(_REGISTRY.items())}


def create_model(name: str, input_spec, num_classes: int, **hparams: Any) -> keras.Model:
    """Build registered model `name` for `input_spec` with `num_classes` logits.

    Args:
        name: a registered model name (see `list_models()`).
        input_spec: the input shape without the batch dimension: `(height, width,
            channels)` for images, `(timesteps, features)` for sequences, `(seq_len,)`
            for token ids.
        num_classes: number of output logits (>= 2).
        **hparams: overrides of the model's defaults; unknown names raise ValueError.

    Returns:
        An uncompiled `keras.Model` named `name` whose output is float32 logits
        `[N, num_classes]` from a Dense layer named "logits".

    Example:

    ```python
    model = create_model("digits_cnn", (8, 8, 1), num_classes=10)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ```
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Registered models: {', '.join(sorted(_REGISTRY))}.")
    builder, defaults = _REGISTRY[name]
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "(none)"
        raise ValueError(f"Unknown hyperparameter(s) {', '.join(map(repr, unknown))} for model {name!r}. Allowed: {allowed}.")
    input_spec = _check_input_spec(input_spec)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    model = builder(input_spec, num_classes, **{**defaults, **hparams})
    # Rename so saved models and summaries say which registry entry built them.
    model.name = name
    return model


def _check_input_spec(input_spec) -> tuple[int, ...]:
    try:
        dims = tuple(input_spec)
    except TypeError:
        dims = None
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(
            f"input_spec must be a tuple of positive ints without the batch dimension, e.g. (32, 32, 3) "
            f"for images or (200,) for token ids; got {input_spec!r}."
        )
    return dims
