"""Precision policy resolution, loss scaling and strategy selection.

This machine has no GPU. The GPU branch of `auto` is tested with a MOCKED device list
(monkeypatched `tf.config.list_physical_devices` / `get_device_details`), because it
cannot exist here; everything else runs for real.
"""
import keras
import pytest
import tensorflow as tf

from components.train import precision
from components.train.precision import (
    PrecisionChoice,
    apply_precision,
    resolve_precision,
    select_strategy,
    strategy_kind,
    wrap_optimizer,
)


@pytest.fixture(autouse=True)
def reset_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def no_real_gpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible; these tests check the CPU-only behaviour")


def _fake_gpus(monkeypatch, capabilities):
    """MOCK: pretend GPUs with these compute capabilities are visible (none exist here)."""
    devices = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(len(capabilities))]
    details = {d.name: {"device_name": f"Fake GPU {i}", "compute_capability": cc} for i, (d, cc) in enumerate(zip(devices, capabilities))}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: devices if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: details[device.name])


def test_auto_on_this_cpu_machine_is_float32_with_reason(no_real_gpu):
    assert resolve_precision("auto") == "float32"
    choice = apply_precision("auto")
    assert choice == PrecisionChoice("float32", "no GPU visible")
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_policies_are_applied(policy):
    policy_applied, reason = apply_precision(policy)
    assert policy_applied == policy and reason == "requested explicitly"
    assert keras.mixed_precision.global_policy().name == policy
    assert keras.layers.Dense(2).compute_dtype == policy.replace("mixed_", "")


def test_unknown_policy_names_it_and_lists_allowed():
    with pytest.raises(ValueError, match=r"Unknown precision policy 'fp16'. Allowed: auto, float32, mixed_float16, mixed_bfloat16"):
        resolve_precision("fp16")


def test_auto_with_mocked_volta_or_newer_gpu_picks_float16(monkeypatch):
    _fake_gpus(monkeypatch, [(6, 1), (8, 0)])
    choice = precision.explain_precision("auto")
    assert choice.policy == "mixed_float16"
    assert "Fake GPU 1" in choice.reason and "8.0" in choice.reason


def test_auto_with_mocked_old_gpu_stays_float32(monkeypatch):
    _fake_gpus(monkeypatch, [(6, 1)])
    choice = precision.explain_precision("auto")
    assert choice.policy == "float32"
    assert "6.1" in choice.reason and ">= 7.0" in choice.reason


def test_wrap_optimizer_adds_loss_scaling_only_for_float16():
    sgd = keras.optimizers.SGD(0.1)
    wrapped = wrap_optimizer(sgd, "mixed_float16")
    assert isinstance(wrapped, keras.mixed_precision.LossScaleOptimizer)
    assert wrapped.inner_optimizer is sgd
    assert wrap_optimizer(wrapped, "mixed_float16") is wrapped  # idempotent
    assert wrap_optimizer(sgd, "float32") is sgd
    assert wrap_optimizer(sgd, "mixed_bfloat16") is sgd  # bfloat16 has float32's exponent range


def test_wrap_optimizer_auto_resolves_first(no_real_gpu):
    sgd = keras.optimizers.SGD(0.1)
    assert wrap_optimizer(sgd, "auto") is sgd


def test_loss_scaling_recovers_float16_gradients_that_underflow():
    """d(loss)/d(var) = 1e-8 is below float16's smallest subnormal (6e-8): without loss
    scaling the float16 backward pass yields 0; with the wrapped optimizer the step happens."""
    var = keras.Variable(1e-3, dtype="float32")
    c = tf.constant(1e-4, tf.float16)

    def loss_fn():
        return tf.cast(tf.cast(var, tf.float16) * c * c, tf.float32)

    with tf.GradientTape() as tape:
        plain = loss_fn()
    assert float(tape.gradient(plain, var)) == 0.0

    optimizer = wrap_optimizer(keras.optimizers.SGD(1.0), "mixed_float16")
    with tf.GradientTape() as tape:
        scaled = optimizer.scale_loss(loss_fn())
    optimizer.apply(tape.gradient(scaled, [var]), [var])  # unscales, checks finiteness, steps
    assert 0.5e-8 < 1e-3 - float(var.numpy()) < 2e-8


def test_select_strategy_without_tf_config_is_default(monkeypatch, no_real_gpu):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy, description = select_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert description == "default strategy (single device: CPU)"


@pytest.mark.parametrize(
    "tf_config, gpus, kind",
    [
        (None, 0, "default"),
        ("", 1, "default"),
        (None, 2, "mirrored"),
        ('{"cluster": {}, "task": {}}', 4, "mirrored"),  # an empty cluster is not multi-worker
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}', 0, "multi_worker"),
        ('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}', 2, "multi_worker"),
    ],
)
def test_strategy_kind(tf_config, gpus, kind):
    # strategy_kind is the decision select_strategy acts on; constructing a real
    # MultiWorkerMirroredStrategy would start collective ops and wait for the peers.
    assert strategy_kind(tf_config, gpus) == kind


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]"])
def test_bad_tf_config_is_named(bad):
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy_kind(bad, 0)
