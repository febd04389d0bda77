"""MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks.

A 3x3/2 stem conv, then the paper's 7 stages of inverted residual blocks
(1x1 expand -> 3x3 depthwise -> 1x1 linear projection; a residual when stride is 1 and
channels match), a 1x1 conv to `last_channels`, global average pooling, `dropout`,
logits. `width_multiplier` scales every conv width (rounded to multiples of 8, as in the
paper; the last conv is not narrowed below `last_channels`). `stages` is the paper's
table of (expansion t, channels c, repeats n, first stride s); pass a shorter table for
a smaller network. Activations are ReLU6; strides are skipped on 1x1 maps so 8x8
inputs build.

Example:

```python
model = create_model("mobilenet_v2", (96, 96, 3), num_classes=10, width_multiplier=0.5)
tiny = create_model("mobilenet_v2", (8, 8, 1), num_classes=10, stages=((1, 16, 1, 1), (6, 24, 2, 2)))
```
"""
from __future__ import annotations

import keras

from models.layers import KERNEL_INIT, adaptive_stride, bn_act, check_common, conv, conv_bn_act, image_input, logits_head
from models.registry import register_model

# (expansion factor t, output channels c, repeats n, first stride s) from the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@register_model(
    "mobilenet_v2", width_multiplier=1.0, stages=STAGES, last_channels=1280, batch_norm=True, dropout=0.2, weight_decay=4e-5
)
def mobilenet_v2(input_spec, num_classes, *, width_multiplier, stages, last_channels, batch_norm, dropout, weight_decay):
    check_common("mobilenet_v2", dropout=dropout, weight_decay=weight_decay)
    if float(width_multiplier) <= 0:
        raise ValueError(f"mobilenet_v2: width_multiplier must be > 0 (e.g. 0.35, 0.5, 1.0, 1.4), got {width_multiplier!r}.")
    if not stages or any(len(stage) != 4 or min(int(v) for v in stage) < 1 for stage in stages):
        raise ValueError(
            "mobilenet_v2: stages must be a non-empty sequence of (expansion, channels, repeats, stride) "
            f"with values >= 1, e.g. {STAGES[:2]}; got {stages!r}."
        )
    alpha = float(width_multiplier)
    opts = dict(batch_norm=batch_norm, weight_decay=weight_decay)

    inputs = image_input(input_spec, "mobilenet_v2")
    stem_stride = adaptive_stride(inputs, 2)
    x = conv_bn_act(inputs, make_divisible(32 * alpha), 3, strides=stem_stride, activation="relu6", name="stem", **opts)
    block_id = 0
    for t, c, n, s in stages:
        for i in range(int(n)):
            block_id += 1
            stride = adaptive_stride(x, int(s) if i == 0 else 1)
            x = _inverted_residual(x, make_divisible(c * alpha), stride, int(t), name=f"block{block_id}", **opts)
    x = conv_bn_act(x, make_divisible(last_channels * max(1.0, alpha)), 1, activation="relu6", name="head", **opts)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, logits_head(x, num_classes, dropout=dropout, weight_decay=weight_decay))


def _inverted_residual(x, out_channels, stride, expansion, *, batch_norm, weight_decay, name):
    in_channels = int(x.shape[-1])
    y = x
    if expansion > 1:
        y = conv_bn_act(
            y, in_channels * expansion, 1, activation="relu6", batch_norm=batch_norm, weight_decay=weight_decay, name=f"{name}_expand"
        )
    # Depthwise kernels are not decayed (as in the reference TF-slim code): they hold few weights.
    y = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=not batch_norm, depthwise_initializer=KERNEL_INIT, name=f"{name}_depthwise"
    )(y)
    y = bn_act(y, batch_norm=batch_norm, activation="relu6", name=f"{name}_depthwise")
    # Linear bottleneck: no activation after the projection.
    y = conv(y, out_channels, 1, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_project_conv")
    y = bn_act(y, batch_norm=batch_norm, activation=None, name=f"{name}_project")
    if stride == 1 and in_channels == out_channels:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y
