"""ResNet v1 (He et al., 2015) and v2 / pre-activation (He et al., 2016).

One builder covers both layouts and both block types:

- `stem="cifar"`: 3x3 conv, then 3 stages of `base_filters * (1, 2, 4)` filters with
  `n` blocks each; depth = 6n + 2 (basic) or 9n + 2 (bottleneck). resnet20: n = 3,
  resnet56: n = 9.
- `stem="imagenet"`: 7x7/2 conv + 3x3/2 max-pool, then 4 stages of
  `base_filters * (1, 2, 4, 8)` filters; depth picks the blocks per stage from the
  paper's table (18, 34 basic; 50, 101, 152 bottleneck) plus the small 10 (basic) and
  14/26 (bottleneck) variants.
- `version=1`: conv-BN-ReLU blocks, ReLU after the addition (the stride sits in the
  3x3 conv of bottlenecks, "v1.5"). `version=2`: BN-ReLU-conv blocks, no ReLU after the
  addition, one BN-ReLU before pooling.
- Bottleneck blocks expand to 4x their filters. Shortcuts are 1x1 projections when the
  shape changes, identities otherwise.

Strides are skipped on 1x1 maps, so even the ImageNet layout builds on 8x8 inputs.
`dropout` applies before the logits.

Example:

```python
model = create_model("resnet20", (32, 32, 3), num_classes=10)
preact = create_model("resnet50_v2", (64, 64, 3), num_classes=100)
custom = create_model("resnet20", (8, 8, 1), num_classes=10, depth=29, block="bottleneck")
```
"""
from __future__ import annotations

import keras

from models.layers import adaptive_stride, bn_act, check_common, conv, conv_bn_act, image_input, logits_head, max_pool
from models.registry import register_model

BLOCKS = ("basic", "bottleneck")
STEMS = ("cifar", "imagenet")
VERSIONS = (1, 2)
# Blocks per stage of the ImageNet layout, by (block type, depth).
IMAGENET_STAGES = {
    "basic": {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
    "bottleneck": {14: (1, 1, 1, 1), 26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)},
}
BOTTLENECK_EXPANSION = 4  # a bottleneck block outputs 4x its inner width

_CIFAR = dict(stem="cifar", base_filters=16, batch_norm=True, dropout=0.0, weight_decay=1e-4)
_IMAGENET = dict(stem="imagenet", base_filters=64, batch_norm=True, dropout=0.0, weight_decay=1e-4)


@register_model("resnet20", depth=20, block="basic", version=1, **_CIFAR)
@register_model("resnet56", depth=56, block="basic", version=1, **_CIFAR)
@register_model("resnet20_v2", depth=20, block="basic", version=2, **_CIFAR)
@register_model("resnet18", depth=18, block="basic", version=1, **_IMAGENET)
@register_model("resnet50", depth=50, block="bottleneck", version=1, **_IMAGENET)
@register_model("resnet50_v2", depth=50, block="bottleneck", version=2, **_IMAGENET)
def resnet(input_spec, num_classes, *, depth, block, version, stem, base_filters, batch_norm, dropout, weight_decay):
    check_common("resnet", dropout=dropout, weight_decay=weight_decay)
    _check_choice("block", block, BLOCKS)
    _check_choice("stem", stem, STEMS)
    _check_choice("version", version, VERSIONS)
    stage_blocks = stage_blocks_for(depth, block, stem)
    base_filters = int(base_filters)
    opts = dict(batch_norm=batch_norm, weight_decay=weight_decay)

    inputs = image_input(input_spec, "resnet")
    kernel, stride = (3, 1) if stem == "cifar" else (7, 2)
    stride = adaptive_stride(inputs, stride)
    if version == 1:
        x = conv_bn_act(inputs, base_filters, kernel, strides=stride, name="stem", **opts)
    else:  # v2 blocks start with BN-ReLU themselves, so the stem is a bare conv.
        x = conv(inputs, base_filters, kernel, strides=stride, weight_decay=weight_decay, name="stem_conv")
    if stem == "imagenet":
        x = max_pool(x, 3, 2, name="stem_pool")

    for stage, n_blocks in enumerate(stage_blocks):
        filters = base_filters * 2**stage
        for i in range(n_blocks):
            stride = adaptive_stride(x, 2 if (stage > 0 and i == 0) else 1)
            x = _residual_block(x, filters, stride, block=block, version=version, name=f"stage{stage + 1}_block{i + 1}", **opts)
    if version == 2:
        x = bn_act(x, batch_norm=batch_norm, name="post")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, logits_head(x, num_classes, dropout=dropout, weight_decay=weight_decay))


def stage_blocks_for(depth: int, block: str, stem: str) -> tuple[int, ...]:
    """Blocks per stage for `depth`; ValueError naming the valid depths otherwise."""
    if stem == "imagenet":
        table = IMAGENET_STAGES[block]
        if depth not in table:
            raise ValueError(
                f"resnet: depth {depth!r} is not defined for the imagenet stem with {block} blocks; use one of {sorted(table)}."
            )
        return table[depth]
    layers_per_block = 2 if block == "basic" else 3
    n, rest = divmod(int(depth) - 2, 3 * layers_per_block)
    if rest or n < 1:
        step = 3 * layers_per_block
        raise ValueError(
            f"resnet: depth {depth!r} is not valid for the cifar stem with {block} blocks; "
            f"use {step}n + 2, e.g. {step + 2}, {2 * step + 2}, {3 * step + 2}."
        )
    return (n, n, n)


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"resnet: {name} must be one of {list(allowed)}, got {value!r}.")


def _residual_block(x, filters, stride, *, block, version, batch_norm, weight_decay, name):
    """One residual block; `block` picks the convs, `version` where BN-ReLU sits."""
    opts = dict(batch_norm=batch_norm, weight_decay=weight_decay)
    out_channels = filters * (BOTTLENECK_EXPANSION if block == "bottleneck" else 1)
    # (filters, kernel, stride) of the residual branch; bottlenecks stride in the 3x3 ("v1.5").
    if block == "basic":
        convs = [(filters, 3, stride), (out_channels, 3, 1)]
    else:
        convs = [(filters, 1, 1), (filters, 3, stride), (out_channels, 1, 1)]
    # v2 pre-activates the input once; its branch and its projection both read that.
    branch_input = x if version == 1 else bn_act(x, batch_norm=batch_norm, name=f"{name}_pre")

    shortcut = x
    if stride != 1 or int(x.shape[-1]) != out_channels:  # identity only when the shape is kept
        if version == 1:
            shortcut = conv_bn_act(x, out_channels, 1, strides=stride, activation=None, name=f"{name}_proj", **opts)
        else:
            shortcut = conv(
                branch_input, out_channels, 1, strides=stride, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_proj_conv"
            )

    y = branch_input
    for i, (f, k, s) in enumerate(convs):
        conv_name = f"{name}_{'abc'[i]}"
        last = i == len(convs) - 1
        if last and version == 2:  # the next block's pre-activation normalizes the sum
            y = conv(y, f, k, strides=s, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{conv_name}_conv")
        else:
            y = conv_bn_act(y, f, k, strides=s, activation=None if last else "relu", name=conv_name, **opts)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    if version == 1:
        y = keras.layers.Activation("relu", name=f"{name}_out")(y)
    return y
