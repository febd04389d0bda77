"""LeNet-5 (LeCun et al., 1998), with ReLU and max-pooling as commonly used today.

conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> dense 120 -> dense 84 -> logits.
Convs use "same" padding (as the usual MNIST adaptation) so 8x8 inputs work; pools are
skipped once the map is 1x1. `dropout` applies after each hidden dense layer.

Example:

```python
model = create_model("lenet5", (28, 28, 1), num_classes=10, batch_norm=True)
```
"""
from __future__ import annotations

import keras

from models.layers import check_common, conv_bn_act, dense_act, image_input, logits_head, max_pool
from models.registry import register_model


@register_model("lenet5", filters=(6, 16), dense_units=(120, 84), batch_norm=False, dropout=0.0, weight_decay=0.0)
def lenet5(input_spec, num_classes, *, filters, dense_units, batch_norm, dropout, weight_decay):
    check_common("lenet5", dropout=dropout, weight_decay=weight_decay)
    inputs = image_input(input_spec, "lenet5")
    x = inputs
    for i, f in enumerate(filters):
        x = conv_bn_act(x, int(f), 5, batch_norm=batch_norm, weight_decay=weight_decay, name=f"conv{i + 1}")
        x = max_pool(x, name=f"pool{i + 1}")
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        x = dense_act(x, int(units), weight_decay=weight_decay, dropout=dropout, name=f"fc{i + 1}")
    return keras.Model(inputs, logits_head(x, num_classes, weight_decay=weight_decay))
