"""Building blocks shared by the model families (functional Keras 3).

Every family uses the same conv/BN/activation helpers, the same downsampling rule for
small inputs and the same float32 logits head, so the options `batch_norm`, `dropout`
and `weight_decay` mean the same thing everywhere:

- `batch_norm`: BatchNormalization after each conv (the conv then has no bias).
- `dropout`: dropout rate in [0, 1); where it applies is documented per family.
- `weight_decay`: L2 penalty `weight_decay * sum(w**2)` on conv/dense kernels, added to
  the loss (coupled L2, not the optimizer's decoupled decay).

Example:

```python
inputs = image_input((8, 8, 1), "my_cnn")
x = conv_bn_act(inputs, 16, 3, batch_norm=True, weight_decay=1e-4, name="stem")
x = max_pool(x, name="pool")
outputs = logits_head(keras.layers.Flatten()(x), 10, dropout=0.1, weight_decay=1e-4)
```
"""
from __future__ import annotations

import keras

# He init suits the ReLU-family activations used throughout the zoo.
KERNEL_INIT = "he_normal"


def check_common(family: str, *, dropout: float, weight_decay: float) -> None:
    """Reject out-of-range shared options with a message naming the fix."""
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{family}: dropout must be in [0, 1), got {dropout!r}.")
    if float(weight_decay) < 0.0:
        raise ValueError(f"{family}: weight_decay must be >= 0 (0 disables the L2 penalty), got {weight_decay!r}.")


def image_input(input_spec: tuple[int, ...], family: str) -> keras.KerasTensor:
    """`keras.Input` for float images `(height, width, channels)`; clear error otherwise."""
    if len(input_spec) != 3:
        raise ValueError(
            f"{family} expects an image input_spec (height, width, channels), e.g. (8, 8, 1) or "
            f"(32, 32, 3); got {input_spec}."
        )
    return keras.Input(shape=input_spec, dtype="float32", name="images")


def regularizer(weight_decay: float):
    """L2 kernel regularizer, or None when `weight_decay` is 0 (no extra loss term)."""
    return keras.regularizers.L2(float(weight_decay)) if weight_decay else None


def spatial_size(x) -> int:
    """Smallest of a feature map's height and width."""
    return min(int(x.shape[1]), int(x.shape[2]))


def adaptive_stride(x, stride: int) -> int:
    """`stride`, or 1 when the map is already too small to shrink.

    With "same" padding a stride never yields a zero-sized map, but on 1x1 maps it
    does nothing useful; skipping it lets ImageNet-style nets build on 8x8 inputs.
    """
    return stride if spatial_size(x) >= 2 else 1


def conv(x, filters: int, kernel_size: int, *, strides: int = 1, use_bias: bool = True, weight_decay: float = 0.0, name: str):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=KERNEL_INIT,
        kernel_regularizer=regularizer(weight_decay),
        name=name,
    )(x)


def bn_act(x, *, batch_norm: bool, activation: str | None = "relu", name: str):
    """BatchNorm (if enabled) then activation (if any)."""
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    batch_norm: bool,
    weight_decay: float,
    activation: str | None = "relu",
    name: str,
):
    """Conv2D ("same" padding) -> BatchNorm (optional) -> activation (optional)."""
    x = conv(x, filters, kernel_size, strides=strides, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_conv")
    return bn_act(x, batch_norm=batch_norm, activation=activation, name=name)


def max_pool(x, pool_size: int = 2, strides: int = 2, *, name: str):
    """MaxPool with "same" padding, skipped on maps that are already 1x1."""
    if spatial_size(x) < 2:
        return x
    return keras.layers.MaxPooling2D(pool_size, strides=strides, padding="same", name=name)(x)


def avg_pool(x, pool_size: int = 2, strides: int = 2, *, name: str):
    """AveragePooling with "same" padding, skipped on maps that are already 1x1."""
    if spatial_size(x) < 2:
        return x
    return keras.layers.AveragePooling2D(pool_size, strides=strides, padding="same", name=name)(x)


def dense_act(x, units: int, *, weight_decay: float, dropout: float, name: str):
    """Hidden Dense + ReLU, then dropout (if > 0)."""
    x = keras.layers.Dense(
        units, activation="relu", kernel_initializer=KERNEL_INIT, kernel_regularizer=regularizer(weight_decay), name=name
    )(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def logits_head(x, num_classes: int, *, dropout: float = 0.0, weight_decay: float = 0.0):
    """Optional dropout, then the float32 `Dense(num_classes, name="logits")`.

    dtype="float32" keeps the logits (and the softmax/loss computed from them) in float32
    under mixed precision, where float16 logits would overflow or lose precision.
    """
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, dtype="float32", kernel_regularizer=regularizer(weight_decay), name="logits")(x)
