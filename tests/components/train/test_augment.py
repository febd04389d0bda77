"""Augmentation transforms: config validation, each op and a full policy, on real tensors.

Shapes used: 8x8x1 (digits) and 32x32x3 (CIFAR-like). Images are deliberately in an
arbitrary value range (standardized, then scaled), as they come out of the Transform.
"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.train.augment import (
    AUGMENTATION_OP_PREFIX,
    OP_PARAMS,
    AugmentationPolicy,
)
from components.train.augment_preview import save_preview

NUM_CLASSES = 10
SHAPES = [(8, 8, 1), (32, 32, 3)]
MIXING = ("mixup", "cutmix")
# p=1 so every example changes; flips at p=1 are deterministic, so they vary via p=0.5.
ALWAYS = {name: {"p": 1.0} for name in OP_PARAMS}
ALWAYS["horizontal_flip"] = ALWAYS["vertical_flip"] = {"p": 0.5}
ALWAYS["color_jitter"] = {"p": 1.0, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}
ALWAYS["random_crop"] = {"p": 1.0, "pad": 2}


def make_batch(shape, n=16, seed=0):
    """Asymmetric random images in a non-[0, 1] range, plus int labels."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *shape)).astype(np.float32) * 3.0 - 7.0
    labels = rng.integers(0, NUM_CLASSES, size=n).astype(np.int32)
    return tf.constant(images), tf.constant(labels)


def build(config, seed=0):
    return AugmentationPolicy.from_config(config, NUM_CLASSES).build(seed)


def per_image_range(x):
    x = np.asarray(x)
    return x.min(axis=(1, 2, 3)), x.max(axis=(1, 2, 3))


# ----------------------------------------------------------------------------- every op, alone


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", list(OP_PARAMS))
def test_single_op_keeps_shape_dtype_range_and_is_seeded(op, shape):
    images, labels = make_batch(shape)
    augment = build({op: ALWAYS[op]}, seed=7)
    out, out_labels = augment(images, labels, 3)
    again, _ = augment(images, labels, 3)
    other_seed, _ = build({op: ALWAYS[op]}, seed=8)(images, labels, 3)
    other_index, _ = augment(images, labels, 4)

    assert out.shape == images.shape and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), again.numpy())  # same seed + inputs -> identical
    assert not np.array_equal(out.numpy(), other_seed.numpy())
    assert not np.array_equal(out.numpy(), other_index.numpy())
    if op in MIXING:
        # A blend of two images stays within the batch's range; labels become soft.
        assert out.numpy().min() >= images.numpy().min() and out.numpy().max() <= images.numpy().max()
        assert out_labels.dtype == tf.float32 and out_labels.shape == (16, NUM_CLASSES)
        np.testing.assert_allclose(out_labels.numpy().sum(axis=1), 1.0, rtol=1e-6)
    else:
        lo, hi = per_image_range(images)
        out_lo, out_hi = per_image_range(out)
        assert np.all(out_lo >= lo) and np.all(out_hi <= hi)
        assert out_labels is labels  # int labels pass through untouched


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_full_policy(shape):
    images, labels = make_batch(shape, n=32)
    policy = AugmentationPolicy.from_config(ALWAYS, NUM_CLASSES)
    assert policy.mixes_labels and list(policy.ops) == list(OP_PARAMS)
    out, soft = policy.build(1)(images, labels, 0)
    again, soft_again = policy.build(1)(images, labels, 0)
    other, _ = policy.build(2)(images, labels, 0)

    assert out.shape == images.shape and out.dtype == images.dtype
    assert soft.shape == (32, NUM_CLASSES) and soft.dtype == tf.float32
    np.testing.assert_allclose(soft.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(soft.numpy() >= 0)
    assert out.numpy().min() >= images.numpy().min() and out.numpy().max() <= images.numpy().max()
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(out.numpy(), again.numpy())
    np.testing.assert_array_equal(soft.numpy(), soft_again.numpy())
    assert not np.array_equal(out.numpy(), other.numpy())


def test_other_float_dtype_is_kept():
    images, labels = make_batch((8, 8, 1))
    out, _ = build({"rotation": {}, "color_jitter": {}})(tf.cast(images, tf.float64), labels, 0)
    assert out.dtype == tf.float64


# ----------------------------------------------------------------------------- what each op does


def test_flips_at_p1_are_exact_mirrors():
    images, labels = make_batch((32, 32, 3))
    h_out, _ = build({"horizontal_flip": {"p": 1}})(images, labels, 0)
    v_out, _ = build({"vertical_flip": {"p": 1}})(images, labels, 0)
    np.testing.assert_array_equal(h_out.numpy(), tf.image.flip_left_right(images).numpy())
    np.testing.assert_array_equal(v_out.numpy(), tf.image.flip_up_down(images).numpy())


def test_probability_p_picks_about_that_share_of_examples():
    images, labels = make_batch((8, 8, 1), n=256)
    out, _ = build({"horizontal_flip": {"p": 0.3}})(images, labels, 0)
    flipped = np.all(out.numpy() == tf.image.flip_left_right(images).numpy(), axis=(1, 2, 3))
    unchanged = np.all(out.numpy() == images.numpy(), axis=(1, 2, 3))
    assert np.all(flipped ^ unchanged)  # each example either flipped exactly or untouched
    assert 0.2 < flipped.mean() < 0.4, flipped.mean()


def test_random_crop_is_a_padded_shift_filled_with_the_image_minimum():
    pad = 2
    images, labels = make_batch((8, 8, 1))
    out, _ = build({"random_crop": {"pad": pad}})(images, labels, 5)
    shifts_seen = set()
    for image, result in zip(images.numpy(), out.numpy()):
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=image.min())
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(padded[dy : dy + 8, dx : dx + 8], result)
        ]
        assert matches, "output is not a crop of the padded image"
        shifts_seen.update(matches)
    assert len(shifts_seen) > 3  # the offsets are random per example


def test_random_resized_crop_of_the_whole_image_is_the_identity():
    images, labels = make_batch((32, 32, 3))
    out, _ = build({"random_resized_crop": {"scale": [1.0, 1.0], "ratio": [1.0, 1.0]}})(images, labels, 0)
    np.testing.assert_allclose(out.numpy(), images.numpy(), atol=1e-5)  # no half-pixel shift


def test_rotation_and_translation_move_pixels_and_fill_with_the_minimum():
    # A bright square on a dark background: translated by up to 40% it leaves the frame partly.
    images = np.full((16, 32, 32, 1), -2.0, np.float32)
    images[:, 8:24, 8:24] = 5.0
    labels = tf.zeros([16], tf.int32)
    for config in ({"translation": {"fraction": 0.4}}, {"rotation": {"degrees": 45}}):
        out, _ = build(config)(tf.constant(images), labels, 1)
        moved = np.any(np.abs(out.numpy() - images) > 1e-3, axis=(1, 2, 3))
        assert moved.mean() > 0.8, config
        assert out.numpy().min() >= -2.0 and out.numpy().max() <= 5.0


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
def test_other_fill_modes(fill_mode):
    images, labels = make_batch((8, 8, 1))
    out, _ = build({"fill_mode": fill_mode, "translation": {"fraction": 0.3}})(images, labels, 0)
    lo, hi = per_image_range(images)
    out_lo, out_hi = per_image_range(out)
    assert np.all(out_lo >= lo) and np.all(out_hi <= hi)


def test_zoom_in_magnifies_the_center():
    images = np.zeros((4, 32, 32, 1), np.float32)
    images[:, 12:20, 12:20] = 1.0  # 8x8 bright center
    out, _ = build({"zoom": {"range": [2.0, 2.0]}})(tf.constant(images), tf.zeros([4], tf.int32), 0)
    bright = (out.numpy() > 0.5).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(bright, 16 * 16, rtol=0.15)  # twice the side, four times the area


def test_cutout_erases_boxes_with_the_image_mean():
    images, labels = make_batch((32, 32, 3))
    out, _ = build({"cutout": {"size": 0.25, "count": 2}})(images, labels, 0)
    changed = np.any(out.numpy() != images.numpy(), axis=-1)  # [N, H, W]
    assert np.all(changed.sum(axis=(1, 2)) > 0)
    assert np.all(changed.sum(axis=(1, 2)) <= 2 * 8 * 8)
    means = images.numpy().mean(axis=(1, 2, 3))
    for i in range(len(means)):
        np.testing.assert_allclose(out.numpy()[i][changed[i]], means[i], rtol=1e-5)


def test_color_jitter_on_grayscale_ignores_saturation_and_hue():
    images, labels = make_batch((8, 8, 1))
    gray, _ = build({"color_jitter": {"brightness": 0, "contrast": 0, "saturation": 0.5, "hue": 0.3}})(images, labels, 0)
    np.testing.assert_array_equal(gray.numpy(), images.numpy())  # nothing to do on one channel
    rgb_images, _ = make_batch((8, 8, 3))
    rgb, _ = build({"color_jitter": {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0.3}})(rgb_images, labels, 0)
    assert not np.allclose(rgb.numpy(), rgb_images.numpy())
    # A hue shift keeps each pixel's max - min (HSV chroma) up to the per-image rescaling.
    chroma_in = np.ptp(rgb_images.numpy(), axis=-1)
    chroma_out = np.ptp(rgb.numpy(), axis=-1)
    assert np.corrcoef(chroma_in.ravel(), chroma_out.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("ops", [["mixup"], ["cutmix"], ["mixup", "cutmix"]])
def test_soft_labels_match_the_image_content(ops):
    # Image i is constant i and has class i, so its mean value must equal sum_k label[k] * k.
    n = NUM_CLASSES
    images = tf.constant(np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 8, 8, 1), np.float32))
    labels = tf.range(n, dtype=tf.int64)
    out, soft = build({op: {"alpha": 1.0} for op in ops}, seed=3)(images, labels, 0)
    expected_means = (soft.numpy() * np.arange(n)).sum(axis=1)
    np.testing.assert_allclose(out.numpy().mean(axis=(1, 2, 3)), expected_means, atol=1e-4)
    assert np.mean(soft.numpy().max(axis=1) < 1.0) > 0.5  # most examples really got mixed
    assert np.all(np.count_nonzero(soft.numpy() > 1e-6, axis=1) <= 2 ** len(ops))


def test_mixing_accepts_column_labels_and_rejects_out_of_range_ids():
    images, _ = make_batch((8, 8, 1), n=4)
    augment = build({"mixup": {}})
    _, soft = augment(images, tf.constant([[1], [2], [3], [4]]), 0)
    assert soft.shape == (4, NUM_CLASSES)
    with pytest.raises(tf.errors.InvalidArgumentError, match="class ids in"):
        augment(images, tf.constant([1, 2, 3, NUM_CLASSES]), 0)


# ----------------------------------------------------------------------------- disabled = identity


@pytest.mark.parametrize(
    "config",
    [None, {}, {"enabled": False, "mixup": {}, "horizontal_flip": {}}, {"rotation": {"p": 0}}, {"cutmix": False}],
    ids=["none", "empty", "enabled-false", "p0", "op-false"],
)
def test_disabled_policy_returns_the_same_tensors(config):
    images, labels = make_batch((8, 8, 1))
    policy = AugmentationPolicy.from_config(config, NUM_CLASSES)
    assert not policy.enabled and not policy.mixes_labels
    augment = policy.build(0)
    out_images, out_labels = augment(images, labels, 0)
    assert out_images is images and out_labels is labels
    dataset = tf.data.Dataset.from_tensors((images, labels))
    assert augment.apply(dataset) is dataset


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "config, message",
    [
        ({"horizontal_flips": {}}, r"Unknown augmentation op 'horizontal_flips'.*Did you mean 'horizontal_flip'.*Allowed: horizontal_flip, vertical_flip"),
        ({"mixup": {"beta": 1}}, r"Unknown augmentation parameter for mixup: 'beta'.*Allowed: p, alpha"),
        ({"rotation": {"p": 1.5}}, r"augmentation.rotation.p = 1.5 is out of range.*\[0.0, 1.0\]"),
        ({"rotation": {"degrees": 270}}, r"degrees = 270 is out of range.*\[0.0, 180.0\]"),
        ({"mixup": {"alpha": 0}}, r"alpha = 0 is out of range.*\(0.0, 10.0\]"),
        ({"random_crop": {"pad": -1}}, r"pad = -1 is out of range.*integer in \[0, 256\]"),
        ({"cutout": {"count": 1.5}}, r"count must be an integer"),
        ({"translation": {"fraction": True}}, r"fraction must be a number"),
        ({"random_resized_crop": {"scale": [0.9, 0.5]}}, r"scale = \[0.9, 0.5\]: low must be <= high"),
        ({"random_resized_crop": {"ratio": 1.0}}, r"ratio must be a \[low, high\] pair"),
        ({"zoom": {"range": [0.05, 1.0]}}, r"zoom.range = 0.05 is out of range.*\[0.1, 10.0\]"),
        ({"color_jitter": {"hue": 0.7}}, r"hue = 0.7 is out of range.*\[0.0, 0.5\]"),
        ({"color_jitter": "strong"}, r"color_jitter must be a mapping of parameters \(p, brightness"),
        ({"fill_mode": "wrap", "rotation": {}}, r"fill_mode = 'wrap' is not allowed; use one of min, nearest, reflect"),
        ({"enabled": "yes"}, r"enabled must be true or false"),
        ({"enabled": False, "rotation": {"degrees": 360}}, r"degrees = 360 is out of range"),  # checked even when off
        (["mixup"], r"must be a mapping of op name -> parameters"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(config, message):
    with pytest.raises(ValueError, match=message):
        AugmentationPolicy.from_config(config, NUM_CLASSES)


def test_bad_arguments_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        AugmentationPolicy.from_config({}, 0)
    with pytest.raises(ValueError, match="seed must be an int64"):
        build({"rotation": {}}, seed="1")
    augment = build({"random_crop": {"pad": 5}})
    images, labels = make_batch((8, 8, 1))
    with pytest.raises(ValueError, match="pad = 5 is too large for 8x8 images: use at most 4"):
        augment(images, labels, 0)
    augment = build({"rotation": {}})
    with pytest.raises(ValueError, match="expects float images, got uint8"):
        augment(tf.zeros([2, 8, 8, 1], tf.uint8), labels[:2], 0)
    with pytest.raises(ValueError, match=r"batch of images \[N, H, W, C\]"):
        augment(tf.zeros([8, 8, 1]), labels, 0)
    with pytest.raises(ValueError, match="labels must be int class ids"):
        augment(images, tf.zeros([16, 2, 2], tf.int32), 0)
    with pytest.raises(ValueError, match="index must be a scalar"):
        augment(images, labels, [0, 1])


# ----------------------------------------------------------------------------- seeds and tf.data


def test_without_an_index_draws_follow_the_batch_content():
    # Which examples a p=0.5 flip picks is the draw; compare it across batches.
    augment = build({"horizontal_flip": {"p": 0.5}})

    def flipped(images):
        out, _ = augment(images, tf.zeros([64], tf.int32))
        return np.all(out.numpy() == tf.image.flip_left_right(images).numpy(), axis=(1, 2, 3))

    first, second = make_batch((8, 8, 1), n=64, seed=0)[0], make_batch((8, 8, 1), n=64, seed=1)[0]
    np.testing.assert_array_equal(flipped(first), flipped(first))  # same batch -> same draws
    assert not np.array_equal(flipped(first), flipped(second))  # another batch -> other draws


def test_dataset_enumerate_map_matches_direct_calls_and_apply_redraws_each_epoch():
    config = {"horizontal_flip": {}, "random_crop": {"pad": 2}, "cutout": {}}  # exact ops: graph == eager
    images, labels = make_batch((8, 8, 1), n=32)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    augment = build(config, seed=11)

    mapped = batches.enumerate().map(lambda i, batch: augment(batch[0], batch[1], i))
    for i, ((out, _), (x, y)) in enumerate(zip(mapped, batches)):
        np.testing.assert_array_equal(out.numpy(), augment(x, y, i)[0].numpy())

    applied = augment.apply(batches)
    epoch1 = np.concatenate([x.numpy() for x, _ in applied])
    epoch2 = np.concatenate([x.numpy() for x, _ in applied])
    rebuilt = np.concatenate([x.numpy() for x, _ in build(config, seed=11).apply(batches)])
    assert not np.array_equal(epoch1, epoch2)  # new draws every pass over a finite dataset
    np.testing.assert_array_equal(epoch1, rebuilt)  # ... and reproducible from the seed


# ----------------------------------------------------------------------------- vectorized, graph-only


def test_vectorized_one_trace_no_per_example_graph():
    augment = AugmentationPolicy.from_config(ALWAYS, NUM_CLASSES).build(0)
    traces = []

    # Unknown batch size: a Python loop over examples could not even be traced.
    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int64)])
    def step(images, labels, index):
        traces.append(1)  # runs only while tracing
        return augment(images, labels, index)

    for seed, n in [(0, 256), (1, 256), (2, 100)]:  # varying contents and batch sizes
        images, labels = make_batch((32, 32, 3), n=n, seed=seed)
        out, soft = step(images, labels, tf.constant(seed, tf.int64))
        assert out.shape == images.shape and soft.shape == (n, NUM_CLASSES)
    assert len(traces) == 1
    # ... and no graph-level loop (tf.map_fn / while) over the examples either.
    op_types = {op.type for op in step.get_concrete_function().graph.get_operations()}
    assert "ImageProjectiveTransformV3" in op_types
    assert not op_types & {"While", "StatelessWhile", "For"}


def test_augmentation_ops_carry_the_prefix_and_stay_out_of_the_serving_graph():
    inputs = tf.keras.Input((8, 8, 1))
    logits = tf.keras.layers.Dense(NUM_CLASSES)(tf.keras.layers.Flatten()(inputs))
    model = tf.keras.Model(inputs, logits)
    augment = build({"horizontal_flip": {}, "rotation": {}, "color_jitter": {}, "mixup": {}})
    spec = (tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int64))

    @tf.function(input_signature=spec)
    def train_forward(images, labels, index):
        images, soft = augment(images, labels, index)
        return tf.keras.losses.categorical_crossentropy(soft, model(images, training=True), from_logits=True)

    @tf.function(input_signature=spec[:1])
    def serve(images):
        return tf.nn.softmax(model(images, training=False))

    train_ops = [op for op in train_forward.get_concrete_function().graph.get_operations()]
    augmentation = [op for op in train_ops if op.name.startswith(AUGMENTATION_OP_PREFIX)]
    assert {"ImageProjectiveTransformV3", "StatelessRandomUniformV2"} <= {op.type for op in augmentation}
    # Every random or image op of the training graph comes from the augmentation scope.
    for op in train_ops:
        if op.type.startswith("StatelessRandom") or op.type == "ImageProjectiveTransformV3":
            assert op.name.startswith(AUGMENTATION_OP_PREFIX), op.name
    serving_ops = serve.get_concrete_function().graph.get_operations()
    assert serving_ops and not [op.name for op in serving_ops if "augmentation" in op.name]


# ----------------------------------------------------------------------------- preview


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_preview_png_is_written_and_readable(tmp_path, shape):
    images, _ = make_batch(shape, n=10)
    policy = AugmentationPolicy.from_config({"horizontal_flip": {}, "random_crop": {"pad": 2}, "cutmix": {}}, NUM_CLASSES)
    path = save_preview(images, policy, seed=0, path=str(tmp_path / "run" / "augmentation.png"), n=8)
    assert (tmp_path / "run" / "augmentation.png").stat().st_size > 0
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 0 and png.height > 0
        assert png.width > png.height  # 8 columns, 1 + 3 rows


def test_preview_rejects_bad_images(tmp_path):
    policy = AugmentationPolicy.from_config({"rotation": {}}, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"save_preview needs images \[M >= 1, H, W, 1 or 3\]"):
        save_preview(np.zeros((8, 8, 1), np.float32), policy, 0, str(tmp_path / "x.png"))
