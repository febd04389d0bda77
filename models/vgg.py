"""VGG (Simonyan & Zisserman, 2014) with configurable blocks.

Stage i has `blocks[i]` 3x3 convs of `min(base_filters * 2**i, max_filters)` filters,
then a 2x2 max-pool (skipped once the map is 1x1). The head is flatten -> hidden
dense layers `dense_units` (ReLU, then `dropout`) -> logits. `vgg11` and `vgg16` are the
paper's A and D configurations; the head defaults to 512 units (the usual CIFAR-sized
head) instead of the paper's 4096 to keep the models practical on small images.

Example:

```python
model = create_model("vgg16", (32, 32, 3), num_classes=10)
tiny = create_model("vgg11", (8, 8, 1), num_classes=10, blocks=(1, 1), base_filters=8)
```
"""
from __future__ import annotations

import keras

from models.layers import check_common, conv_bn_act, dense_act, image_input, logits_head, max_pool
from models.registry import register_model

_COMMON = dict(base_filters=64, max_filters=512, dense_units=(512, 512), batch_norm=True, dropout=0.5, weight_decay=5e-4)


@register_model("vgg11", blocks=(1, 1, 2, 2, 2), **_COMMON)
@register_model("vgg16", blocks=(2, 2, 3, 3, 3), **_COMMON)
def vgg(input_spec, num_classes, *, blocks, base_filters, max_filters, dense_units, batch_norm, dropout, weight_decay):
    check_common("vgg", dropout=dropout, weight_decay=weight_decay)
    if not blocks or any(int(n) < 1 for n in blocks):
        raise ValueError(
            f"vgg: blocks must be a non-empty sequence of convs per stage (each >= 1), e.g. (1, 1, 2, 2, 2); got {blocks!r}."
        )
    inputs = image_input(input_spec, "vgg")
    x = inputs
    for stage, n_convs in enumerate(blocks):
        filters = min(int(base_filters) * 2**stage, int(max_filters))
        for i in range(int(n_convs)):
            x = conv_bn_act(x, filters, 3, batch_norm=batch_norm, weight_decay=weight_decay, name=f"stage{stage + 1}_conv{i + 1}")
        x = max_pool(x, name=f"stage{stage + 1}_pool")
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        x = dense_act(x, int(units), weight_decay=weight_decay, dropout=dropout, name=f"fc{i + 1}")
    return keras.Model(inputs, logits_head(x, num_classes, weight_decay=weight_decay))
