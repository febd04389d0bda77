"""A small, fast CNN for the digits default config (sklearn 8x8 digits).

conv 32 -> conv 64 -> max-pool -> dropout -> dense 128 -> dropout -> logits
(the classic Keras MNIST CNN, with "same" padding so 8x8 inputs keep their size until
the pool). 151,306 parameters on 8x8x1 inputs with 10 classes.

Example:

```python
model = create_model("digits_cnn", (8, 8, 1), num_classes=10, dropout=0.3)
```
"""
from __future__ import annotations

import keras

from models.layers import check_common, conv_bn_act, dense_act, image_input, logits_head, max_pool
from models.registry import register_model


@register_model("digits_cnn", filters=(32, 64), dense_units=128, batch_norm=False, dropout=0.25, weight_decay=0.0)
def digits_cnn(input_spec, num_classes, *, filters, dense_units, batch_norm, dropout, weight_decay):
    """Conv stack `filters`, one pool, one hidden dense; `dropout` after the pool and the dense."""
    check_common("digits_cnn", dropout=dropout, weight_decay=weight_decay)
    inputs = image_input(input_spec, "digits_cnn")
    x = inputs
    for i, f in enumerate(filters):
        x = conv_bn_act(x, int(f), 3, batch_norm=batch_norm, weight_decay=weight_decay, name=f"conv{i + 1}")
    x = max_pool(x, name="pool")
    if dropout:
        x = keras.layers.Dropout(dropout, name="pool_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = dense_act(x, int(dense_units), weight_decay=weight_decay, dropout=dropout, name="fc")
    return keras.Model(inputs, logits_head(x, num_classes, weight_decay=weight_decay))
