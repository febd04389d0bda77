"""Every registered model: builds, trains two steps, returns float32 logits, and serves.

Runs under float32, mixed_float16 and mixed_bfloat16 (on CPU: the dtypes are real, only
the speed differs from a GPU). To keep the suite fast, models are built with small
hyperparameters (`TINY`: the same layout with fewer or narrower layers) on 8x8x1 inputs;
`test_defaults_build_with_reference_sizes` builds the full-size defaults.

Image models are saved through the serving contract (`export_serving_model`), reloaded with
`tf.saved_model.load` and called through `serving_images`: every model under float32, one
model per family under the mixed policies. `text_bilstm` takes token ids, which only exist
after the text Transform (vocabulary); here it is saved and reloaded as a `.keras` file,
and tests/pipeline/test_text.py trains it in the real pipeline and serves it through
`serving_text`.
"""
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.train.export import export_serving_model

from serving.contract import IMAGES_SIGNATURE, read_label_names
from components.train.optim import build_loss
from components.train.precision import wrap_optimizer
from models import create_model, list_models

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
IMAGE_SPEC = (8, 8, 1)
LABELS = ["cat", "dog", "emu"]
K = len(LABELS)
N = 8  # 2 steps of batch 4

TINY = {
    "digits_cnn": dict(filters=(8, 16), dense_units=16),
    "lenet5": dict(filters=(4, 8), dense_units=(16, 8)),
    "vgg11": dict(blocks=(1, 2), base_filters=4, dense_units=(16,)),
    "vgg16": dict(blocks=(2, 3), base_filters=4, dense_units=(16,)),
    "resnet20": dict(depth=8, base_filters=4),
    "resnet56": dict(depth=8, base_filters=4, dropout=0.1),
    "resnet20_v2": dict(depth=8, base_filters=4),
    "resnet18": dict(depth=10, base_filters=4),
    "resnet50": dict(depth=14, base_filters=4),
    "resnet50_v2": dict(depth=14, base_filters=4),
    "densenet_bc_100": dict(depth=10, growth_rate=4),
    "mobilenet_v2": dict(width_multiplier=0.25, stages=((1, 16, 1, 1), (6, 24, 2, 2)), last_channels=16),
    "lstm": dict(units=(8, 8)),
    "gru": dict(units=(8, 8)),
    "bilstm": dict(units=(8,)),  # stacking is covered by lstm and gru
    "row_lstm": dict(units=(16,)),
    "text_bilstm": dict(vocab_size=50, embed_dim=8, units=(8,)),
}
IMAGE_MODELS = sorted(set(TINY) - {"text_bilstm"})
# One model per family (the cheapest to trace) round-trips through SavedModel under every
# policy; the others under float32 only.
FAMILY_REPRESENTATIVES = {"digits_cnn", "lenet5", "vgg11", "resnet20_v2", "densenet_bc_100", "mobilenet_v2", "row_lstm"}
# Fits run eagerly: tracing a train graph costs 4-8x the two steps themselves (measured:
# 12 s vs 1.7 s CPU for the tiny resnet50_v2), and the export traces every model's
# inference graph anyway. One compiled fit checks the graph path with dynamic loss
# scaling, which adds control flow (the Trainer compiles digits_cnn).
GRAPH_FIT = ("digits_cnn", "mixed_float16")
# Serving vs. Keras probabilities: same weights, graph vs. eager kernels, policy precision.
PROB_ATOL = {"float32": 1e-5, "mixed_float16": 5e-3, "mixed_bfloat16": 3e-2}
COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture(autouse=True)
def reset_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_every_registered_model_is_tested():
    assert set(TINY) == set(list_models()), "add a small config to TINY for each new registered model"


def _train_two_steps(model, x, y, policy, *, eager):
    model.compile(optimizer=wrap_optimizer(keras.optimizers.Adam(1e-3), policy), loss=build_loss(), run_eagerly=eager)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=N // 2, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer) == (policy == "mixed_float16")
    applied = int(optimizer.iterations.numpy())
    skipped = 0
    if policy == "mixed_float16":
        # Dynamic loss scaling skips a step whose float16 gradients overflowed and halves the scale.
        skipped = round(math.log2(optimizer.initial_scale / float(optimizer.dynamic_scale.numpy())))
    assert applied + skipped == 2, f"{applied} applied + {skipped} skipped steps"
    if applied:
        changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
        assert any(changed), "no trainable weight changed"


def _check_logits(model, x, policy):
    logits = model(x, training=False)
    assert logits.dtype == tf.float32 and tuple(logits.shape) == (len(x), K)
    assert np.all(np.isfinite(logits.numpy()))
    assert model.get_layer("logits").compute_dtype == "float32"
    # The policy took effect on the body of the network, not just its name.
    assert any(layer.compute_dtype == COMPUTE_DTYPE[policy] for layer in model.layers if layer.weights)
    return logits


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_model_trains_and_serves(name, policy, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, *IMAGE_SPEC), dtype=np.uint8)
    x, y = images.astype("float32") / 255.0, rng.integers(0, K, N)

    model = create_model(name, IMAGE_SPEC, K, **TINY[name])
    _train_two_steps(model, x, y, policy, eager=(name, policy) != GRAPH_FIT)
    logits = _check_logits(model, x, policy)

    if policy != "float32" and name not in FAMILY_REPRESENTATIVES:
        return
    export_dir = os.path.join(tmp_path, "1")
    export_serving_model(model, export_dir, image_shape=IMAGE_SPEC, label_names=LABELS)
    assert read_label_names(export_dir) == LABELS
    served = tf.saved_model.load(export_dir).signatures[IMAGES_SIGNATURE](images=tf.constant(images))
    assert served["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(served["probabilities"].numpy(), tf.nn.softmax(logits).numpy(), atol=PROB_ATOL[policy])
    assert [c.decode() for c in served["classes"].numpy()[0]] == LABELS


@pytest.mark.parametrize("policy", POLICIES)
def test_text_bilstm_trains_and_round_trips_as_keras_file(policy, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, (N, 12)).astype("int32")
    tokens[:, 9:] = 0  # padding
    y = rng.integers(0, K, N)

    model = create_model("text_bilstm", (12,), K, **TINY["text_bilstm"])
    _train_two_steps(model, tokens, y, policy, eager=True)
    logits = _check_logits(model, tokens, policy)

    path = os.path.join(tmp_path, "text.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(tokens, training=False).numpy(), logits.numpy(), atol=1e-6)


def test_text_bilstm_ignores_padding():
    """mask_zero: trailing padding does not change the prediction (weights do not depend on seq_len)."""
    short = create_model("text_bilstm", (4,), K, **TINY["text_bilstm"])
    long = create_model("text_bilstm", (7,), K, **TINY["text_bilstm"])
    long.set_weights(short.get_weights())
    ids = np.array([[5, 6, 7, 0], [9, 3, 0, 0]], "int32")
    padded = np.pad(ids, [(0, 0), (0, 3)])
    np.testing.assert_allclose(long(padded).numpy(), short(ids).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_builds_for_rgb_non_square_input(name):
    """13x21 RGB: odd, non-square sizes exercise the small-input stride/pool rules."""
    model = create_model(name, (13, 21, 3), K, **TINY[name])
    x = np.random.default_rng(1).random((2, 13, 21, 3), dtype=np.float32)
    assert tuple(model(x, training=False).shape) == (2, K)


@pytest.mark.parametrize("name", ["lstm", "gru", "bilstm"])
def test_sequence_models_take_timesteps_by_features(name):
    model = create_model(name, (6, 3), K, **TINY[name])
    x = np.random.default_rng(2).random((N, 6, 3), dtype=np.float32)
    _train_two_steps(model, x, np.arange(N) % K, "float32", eager=True)
    assert tuple(model(x).shape) == (N, K)


# Trainable parameter counts of the full-size defaults. Exact where an independent
# implementation publishes them (torchvision: ResNet v1.5, MobileNetV2), else the paper's
# rounded figure: ResNet-20/56 0.27 M / 0.85 M (He et al. 2015, Table 6; our shortcuts are
# projections, the paper's are zero-padding, hence +1%), DenseNet-BC L=100 k=12 0.8 M.
REFERENCE_PARAMS = {
    "resnet18": (1000, 11_689_512, 0.0),
    "resnet50": (1000, 25_557_032, 0.0),
    "mobilenet_v2": (1000, 3_504_872, 0.0),
    "resnet20": (10, 270_000, 0.02),
    "resnet56": (10, 850_000, 0.02),
    "densenet_bc_100": (10, 800_000, 0.05),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_defaults_build_with_reference_sizes(name):
    num_classes, expected, rel = REFERENCE_PARAMS.get(name, (10, None, None))
    spec = (200,) if name == "text_bilstm" else (32, 32, 3)
    model = create_model(name, spec, num_classes)
    assert model.output.shape == (None, num_classes) and model.output.dtype == "float32"
    if expected is not None:
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == pytest.approx(expected, rel=rel), f"{name}: {trainable:,} trainable parameters"


def test_imagenet_stem_adapts_to_8x8():
    """7x7/2 conv + 3x3/2 pool on 8x8 leaves 2x2; later strides stop at 1x1 instead of failing."""
    model = create_model("resnet18", IMAGE_SPEC, K, depth=10, base_filters=4)
    last_block = model.get_layer("stage4_block1_out")
    assert tuple(last_block.output.shape[1:3]) == (1, 1)


def test_weight_decay_adds_l2_losses():
    plain = create_model("digits_cnn", IMAGE_SPEC, K, **TINY["digits_cnn"])
    decayed = create_model("digits_cnn", IMAGE_SPEC, K, **TINY["digits_cnn"], weight_decay=1e-3)
    plain(np.zeros((1, *IMAGE_SPEC), "float32"))
    decayed(np.zeros((1, *IMAGE_SPEC), "float32"))
    assert not plain.losses
    assert len(decayed.losses) == 4  # 2 conv + 1 hidden dense + logits kernels
