"""Schedules (values at key steps, serialization), optimizers and the loss."""
import math

import keras
import numpy as np
import pytest

from components.train.optim import (
    SparseCategoricalCrossentropyWithSmoothing,
    WarmupConstant,
    WarmupCosine,
    WarmupStepDecay,
    build_loss,
    build_optimizer,
    build_schedule,
)


def lr_at(schedule, step):
    return float(schedule(step))


# --- schedules ---------------------------------------------------------------------------

def test_cosine_with_warmup_key_steps():
    s = build_schedule("cosine", 0.1, total_steps=1100, warmup_steps=100)
    assert isinstance(s, WarmupCosine)
    assert lr_at(s, 0) == 0.0
    assert lr_at(s, 50) == pytest.approx(0.05)  # halfway through the linear warmup
    assert lr_at(s, 100) == pytest.approx(0.1)  # warmup end = peak
    assert lr_at(s, 600) == pytest.approx(0.05)  # midpoint of the cosine
    assert lr_at(s, 350) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert lr_at(s, 1100) == pytest.approx(0.0, abs=1e-9)  # end
    assert lr_at(s, 5000) == pytest.approx(0.0, abs=1e-9)  # stays at the floor


def test_cosine_min_lr_floor():
    s = build_schedule("cosine", 1.0, total_steps=100, min_lr=0.1)
    assert lr_at(s, 0) == pytest.approx(1.0)  # no warmup: starts at the peak
    assert lr_at(s, 50) == pytest.approx(0.55)
    assert lr_at(s, 100) == pytest.approx(0.1)


def test_constant_with_warmup():
    s = build_schedule("constant", 2e-3, total_steps=1000, warmup_steps=10)
    assert isinstance(s, WarmupConstant)
    assert [lr_at(s, t) for t in (0, 5, 10, 999)] == pytest.approx([0.0, 1e-3, 2e-3, 2e-3])


def test_one_cycle_key_steps():
    s = build_schedule("one_cycle", 1.0, total_steps=1000)  # warmup defaults to 30%
    assert lr_at(s, 0) == pytest.approx(1 / 25)
    assert lr_at(s, 150) == pytest.approx((1 / 25 + 1) / 2)
    assert lr_at(s, 300) == pytest.approx(1.0)  # peak at the end of the warmup
    final = 1 / (25 * 1e4)
    assert lr_at(s, 650) == pytest.approx((1 + final) / 2)  # midpoint of the annealing
    assert lr_at(s, 1000) == pytest.approx(final, rel=1e-3)


def test_one_cycle_custom_factors_and_warmup():
    s = build_schedule("one_cycle", 0.5, total_steps=100, warmup_steps=10, div_factor=10, final_div_factor=100)
    assert lr_at(s, 0) == pytest.approx(0.05)
    assert lr_at(s, 10) == pytest.approx(0.5)
    assert lr_at(s, 100) == pytest.approx(0.5 / 1000)


def test_step_decay_boundaries():
    s = build_schedule("step", 0.1, total_steps=200, boundaries=[100, 150], decay=0.1)
    assert isinstance(s, WarmupStepDecay)
    assert [lr_at(s, t) for t in (0, 99, 100, 149, 150, 199)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_step_decay_default_boundaries_and_warmup():
    s = build_schedule("step", 1.0, total_steps=400, warmup_steps=20)
    assert [lr_at(s, t) for t in (10, 20, 199, 200, 300)] == pytest.approx([0.5, 1.0, 1.0, 0.1, 0.01])
    assert build_schedule("step", 1.0, total_steps=1).boundaries == [1]  # tiny runs still valid


@pytest.mark.parametrize(
    "kind, kwargs",
    [("constant", {}), ("cosine", {"min_lr": 1e-4}), ("one_cycle", {"div_factor": 5}), ("step", {"boundaries": [5, 8]})],
)
def test_schedules_serialize_alone_and_inside_an_optimizer(kind, kwargs):
    s = build_schedule(kind, 0.1, total_steps=10, warmup_steps=2, **kwargs)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert type(restored) is type(s)
    steps = range(0, 12)
    assert [lr_at(restored, t) for t in steps] == pytest.approx([lr_at(s, t) for t in steps])

    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(build_optimizer("sgd", s)))
    optimizer.iterations.assign(5)  # the learning rate follows the restored schedule
    assert float(optimizer.learning_rate) == pytest.approx(lr_at(s, 5))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("linear", 0.1, 10), {}, r"Unknown learning-rate schedule 'linear'. Allowed: constant, cosine, one_cycle, step"),
        (("cosine", 0.1, 10), {"boundaries": [5]}, r"Unknown argument\(s\) 'boundaries' for schedule 'cosine'. Allowed: min_lr"),
        (("constant", 0.1, 10), {"min_lr": 0}, r"for schedule 'constant'. Allowed: \(none\)"),
        (("cosine", 0.0, 10), {}, "base_lr must be > 0"),
        (("cosine", 0.1, 0), {}, "total_steps must be >= 1"),
        (("cosine", 0.1, 10), {"warmup_steps": 11}, r"warmup_steps must be in \[0, total_steps=10\]"),
        (("step", 0.1, 10), {"boundaries": [5, 3]}, "boundaries must be strictly increasing"),
        (("step", 0.1, 10), {"decay": 2}, r"decay must be in \(0, 1\]"),
        (("one_cycle", 0.1, 10), {"div_factor": 0.5}, "div_factor and final_div_factor must be >= 1"),
    ],
)
def test_build_schedule_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_schedule(*args, **kwargs)


# --- optimizers --------------------------------------------------------------------------

def test_sgd_defaults_and_options():
    sgd = build_optimizer("sgd", 0.1)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert sgd.momentum == 0.9 and not sgd.nesterov and sgd.weight_decay is None
    sgd = build_optimizer("sgd", 0.1, momentum=0.5, nesterov=True, weight_decay=1e-4)
    assert sgd.momentum == 0.5 and sgd.nesterov and sgd.weight_decay == pytest.approx(1e-4)


def test_adam_and_adamw():
    schedule = build_schedule("cosine", 1e-3, total_steps=10)
    adam = build_optimizer("adam", schedule, momentum=0.8)
    assert type(adam) is keras.optimizers.Adam and adam.beta_1 == 0.8
    assert adam.get_config()["learning_rate"]["class_name"] == "WarmupCosine"
    adamw = build_optimizer("adamw", schedule)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(0.01)
    assert build_optimizer("adamw", schedule, weight_decay=0.05).weight_decay == pytest.approx(0.05)
    assert type(build_optimizer("adam", 1e-3, weight_decay=0.0)) is keras.optimizers.Adam


def test_decoupled_weight_decay_skips_biases_and_batchnorm():
    """One SGD step with zero gradients: only decay moves weights, and only the kernel."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="ones"), keras.layers.BatchNormalization()])
    model.get_layer(index=0).bias.assign(np.ones(2, "float32"))
    optimizer = build_optimizer("sgd", 0.1, weight_decay=0.5, momentum=0.0)
    variables = model.trainable_weights  # kernel, bias, gamma (ones), beta
    before = {v.path: v.numpy().copy() for v in variables}
    optimizer.apply([np.zeros(v.shape, "float32") for v in variables], variables)
    for v in variables:
        expected = before[v.path] * (1 - 0.1 * 0.5) if v.name == "kernel" else before[v.path]
        np.testing.assert_allclose(v.numpy(), expected, err_msg=v.path)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("rmsprop", {}, r"Unknown optimizer 'rmsprop'. Allowed: sgd, adam, adamw"),
        ("adam", {"weight_decay": 1e-4}, r"adam takes no weight_decay .*use 'adamw'"),
        ("adamw", {"nesterov": True}, "nesterov applies to 'sgd' only"),
        ("sgd", {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ("sgd", {"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ],
)
def test_build_optimizer_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(name, 0.1, **kwargs)


# --- loss --------------------------------------------------------------------------------

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
LABELS = np.array([0, 1])


def _reference_ce(logits, labels, smoothing):
    k = logits.shape[-1]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = np.eye(k)[labels] * (1 - smoothing) + smoothing / k
    return float(np.mean(-(targets * log_probs).sum(-1)))


def test_loss_without_smoothing_is_sparse_ce_from_logits():
    loss = build_loss()
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    assert float(loss(LABELS, LOGITS)) == pytest.approx(_reference_ce(LOGITS, LABELS, 0.0), rel=1e-5)


@pytest.mark.parametrize("labels", [LABELS, LABELS[:, None]])  # [N] and [N, 1] label shapes
def test_label_smoothing_value(labels):
    loss = build_loss(0.1)
    assert isinstance(loss, SparseCategoricalCrossentropyWithSmoothing)
    expected = _reference_ce(LOGITS, LABELS, 0.1)
    assert float(loss(labels, LOGITS)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels, LOGITS)) != pytest.approx(float(build_loss()(LABELS, LOGITS)), rel=1e-3)


def test_smoothed_loss_serializes():
    restored = keras.losses.deserialize(keras.losses.serialize(build_loss(0.2)))
    assert isinstance(restored, SparseCategoricalCrossentropyWithSmoothing) and restored.label_smoothing == 0.2
    assert float(restored(LABELS, LOGITS)) == pytest.approx(_reference_ce(LOGITS, LABELS, 0.2), rel=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_bad_label_smoothing(bad):
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        build_loss(bad)
