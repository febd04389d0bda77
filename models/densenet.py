"""DenseNet-BC (Huang et al., 2017): dense blocks with bottlenecks and compression.

CIFAR layout: a 3x3 conv of `2 * growth_rate` filters, then 3 dense blocks of
`n = (depth - 4) / 6` layers separated by transitions. Each layer is
BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) and concatenates its k new channels onto its
input; each transition is BN-ReLU-conv1x1(floor(compression * channels))-avgpool 2x2
(the pool is skipped on 1x1 maps). Then BN-ReLU, global average pooling, `dropout`,
logits. densenet_bc_100 is the paper's L=100, k=12 model (0.8 M parameters).

Example:

```python
model = create_model("densenet_bc_100", (32, 32, 3), num_classes=10)
tiny = create_model("densenet_bc_100", (8, 8, 1), num_classes=10, depth=10, growth_rate=4)
```
"""
from __future__ import annotations

import math

import keras

from models.layers import avg_pool, bn_act, check_common, conv, image_input, logits_head
from models.registry import register_model

N_BLOCKS = 3
BOTTLENECK_WIDTH = 4  # the 1x1 bottleneck conv has 4k filters (the "B" in BC)


@register_model("densenet_bc_100", depth=100, growth_rate=12, compression=0.5, batch_norm=True, dropout=0.0, weight_decay=1e-4)
def densenet_bc(input_spec, num_classes, *, depth, growth_rate, compression, batch_norm, dropout, weight_decay):
    check_common("densenet_bc", dropout=dropout, weight_decay=weight_decay)
    layers_per_block = layers_per_block_for(depth)
    if not 0.0 < float(compression) <= 1.0:
        raise ValueError(f"densenet_bc: compression must be in (0, 1] (0.5 in the paper; 1 disables it), got {compression!r}.")
    if int(growth_rate) < 1:
        raise ValueError(f"densenet_bc: growth_rate must be >= 1 (12 or 24 in the paper), got {growth_rate!r}.")
    k = int(growth_rate)
    opts = dict(batch_norm=batch_norm, weight_decay=weight_decay)

    inputs = image_input(input_spec, "densenet_bc")
    x = conv(inputs, 2 * k, 3, use_bias=not batch_norm, weight_decay=weight_decay, name="stem_conv")
    for b in range(N_BLOCKS):
        for i in range(layers_per_block):
            x = _dense_layer(x, k, name=f"block{b + 1}_layer{i + 1}", **opts)
        if b < N_BLOCKS - 1:
            x = _transition(x, compression, name=f"transition{b + 1}", **opts)
    x = bn_act(x, batch_norm=batch_norm, name="post")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, logits_head(x, num_classes, dropout=dropout, weight_decay=weight_decay))


def layers_per_block_for(depth: int) -> int:
    """Layers per dense block n, from depth = 3 blocks * n layers * 2 convs + 4 (stem, 2 transitions, logits)."""
    n, rest = divmod(int(depth) - 4, 6)
    if rest or n < 1:
        raise ValueError(f"densenet_bc: depth {depth!r} is not of the form 6n + 4; use e.g. 10, 40, 100 or 190.")
    return n


def _dense_layer(x, k, *, batch_norm, weight_decay, name):
    y = bn_act(x, batch_norm=batch_norm, name=f"{name}_pre")
    y = conv(y, BOTTLENECK_WIDTH * k, 1, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_1x1_conv")
    y = bn_act(y, batch_norm=batch_norm, name=f"{name}_mid")
    y = conv(y, k, 3, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_3x3_conv")
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def _transition(x, compression, *, batch_norm, weight_decay, name):
    channels = max(1, math.floor(float(compression) * int(x.shape[-1])))
    y = bn_act(x, batch_norm=batch_norm, name=f"{name}_pre")
    y = conv(y, channels, 1, use_bias=not batch_norm, weight_decay=weight_decay, name=f"{name}_conv")
    return avg_pool(y, name=f"{name}_pool")
