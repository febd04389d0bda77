"""Recurrent classifiers: stacked LSTM / GRU / bidirectional LSTM, images as row
sequences, and an Embedding + BiLSTM text classifier.

Sequence models take `(timesteps, features)` float inputs. Given an image input_spec
`(H, W, C)` they read it row by row: each of the H rows is one timestep of W*C features
(so `row_lstm` classifies the 8x8 digits as 8 steps of 8 pixels). One recurrent layer
per entry of `units`; all but the last return sequences, the last returns its final
state. `dropout` applies after each recurrent layer. `weight_decay` is an L2 penalty on
the input and recurrent kernels and on the logits kernel.

`text_bilstm` takes int token ids `(seq_len,)` with 0 as padding (masked), e.g. the
imdb_reviews ids of a vocabulary of `vocab_size` tokens.

Example:

```python
row = create_model("row_lstm", (8, 8, 1), num_classes=10)
seq = create_model("gru", (50, 3), num_classes=4, units=(64, 32))
text = create_model("text_bilstm", (200,), num_classes=2, vocab_size=20000)
```
"""
from __future__ import annotations

import keras

from models.layers import check_common, logits_head, regularizer
from models.registry import register_model

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
TOKEN_MODELS = frozenset({"text_bilstm"})  # input: int token ids (seq_len,); the rest read images/sequences
_SEQ = dict(dropout=0.0, weight_decay=0.0)


@register_model("lstm", cell="lstm", bidirectional=False, units=(128, 128), **_SEQ)
@register_model("gru", cell="gru", bidirectional=False, units=(128, 128), **_SEQ)
@register_model("bilstm", cell="lstm", bidirectional=True, units=(64, 64), **_SEQ)
@register_model("row_lstm", cell="lstm", bidirectional=False, units=(128,), **_SEQ)
def sequence_classifier(input_spec, num_classes, *, cell, bidirectional, units, dropout, weight_decay):
    check_common("sequence_classifier", dropout=dropout, weight_decay=weight_decay)
    if len(input_spec) == 3:  # an image: rows are timesteps
        height, width, channels = input_spec
        inputs = keras.Input(shape=input_spec, dtype="float32", name="images")
        x = keras.layers.Reshape((height, width * channels), name="rows_as_timesteps")(inputs)
    elif len(input_spec) == 2:
        inputs = keras.Input(shape=input_spec, dtype="float32", name="sequences")
        x = inputs
    else:
        raise ValueError(
            f"sequence models expect input_spec (timesteps, features) or an image (height, width, channels); got {input_spec}. "
            "For token ids (seq_len,) use 'text_bilstm'."
        )
    x = recurrent_stack(x, cell=cell, bidirectional=bidirectional, units=units, dropout=dropout, weight_decay=weight_decay)
    return keras.Model(inputs, logits_head(x, num_classes, weight_decay=weight_decay))


@register_model("text_bilstm", vocab_size=20000, embed_dim=128, units=(64,), dropout=0.3, weight_decay=0.0)
def text_bilstm(input_spec, num_classes, *, vocab_size, embed_dim, units, dropout, weight_decay):
    """Embedding(vocab_size, embed_dim, mask_zero) -> BiLSTM stack -> logits."""
    check_common("text_bilstm", dropout=dropout, weight_decay=weight_decay)
    if len(input_spec) != 1:
        raise ValueError(f"text_bilstm expects token ids input_spec (seq_len,), e.g. (200,); got {input_spec}.")
    if int(vocab_size) < 2 or int(embed_dim) < 1:
        raise ValueError(
            f"text_bilstm: vocab_size must be >= 2 (id 0 is padding) and embed_dim >= 1; got {vocab_size!r}, {embed_dim!r}."
        )
    inputs = keras.Input(shape=input_spec, dtype="int32", name="tokens")
    x = keras.layers.Embedding(int(vocab_size), int(embed_dim), mask_zero=True, name="embedding")(inputs)
    x = recurrent_stack(x, cell="lstm", bidirectional=True, units=units, dropout=dropout, weight_decay=weight_decay)
    return keras.Model(inputs, logits_head(x, num_classes, weight_decay=weight_decay))


def recurrent_stack(x, *, cell: str, bidirectional: bool, units, dropout: float, weight_decay: float):
    """`len(units)` recurrent layers; the last one returns only its final output."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}.")
    if not units or any(int(u) < 1 for u in units):
        raise ValueError(f"units must be a non-empty sequence of layer sizes (each >= 1), e.g. (128, 128); got {units!r}.")
    for i, n in enumerate(units):
        last = i == len(units) - 1
        layer = CELLS[cell](
            int(n),
            return_sequences=not last,
            kernel_regularizer=regularizer(weight_decay),
            recurrent_regularizer=regularizer(weight_decay),
            name=f"{cell}{i + 1}",
        )
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi{cell}{i + 1}")
        x = layer(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{cell}{i + 1}_dropout")(x)
    return x
