"""The `train.augmentation:` section's one schema: a frozen dataclass per op (issue 12, item 6)."""
import dataclasses
import os
import subprocess
import sys

import pytest

from components.train import augment
from components.train.augment_config import CONFIG_KEY, OP_SPECS, OpSpec, parse_augmentation
from pipeline.config import ConfigError, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# The defaults as they were before the ops became dataclasses: behaviour unchanged.
DEFAULTS = {
    "horizontal_flip": {"p": 0.5}, "vertical_flip": {"p": 0.5},
    "random_resized_crop": {"p": 1.0, "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)},
    "random_crop": {"p": 1.0, "pad": 2}, "rotation": {"p": 1.0, "degrees": 15.0}, "zoom": {"p": 1.0, "range": (0.9, 1.1)},
    "translation": {"p": 1.0, "fraction": 0.1},
    "color_jitter": {"p": 1.0, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.0},
    "cutout": {"p": 1.0, "size": 0.25, "count": 1}, "mixup": {"p": 1.0, "alpha": 0.2}, "cutmix": {"p": 1.0, "alpha": 1.0},
}


def _params():
    """(op, key, spec) for every parameter of every op."""
    return [(name, f.name, f.metadata["spec"]) for name, spec in OP_SPECS.items() for f in dataclasses.fields(spec)]


def test_each_op_is_a_frozen_dataclass_owning_its_defaults():
    assert list(OP_SPECS) == list(DEFAULTS) and augment.OP_PARAMS is OP_SPECS  # run order unchanged, one table
    for name, spec in OP_SPECS.items():
        assert issubclass(spec, OpSpec) and spec.NAME == name
        assert spec().params() == DEFAULTS[name] == spec.from_config({}).params()
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec().p = 0.1
    ops, fill_mode = parse_augmentation({name: None for name in OP_SPECS})
    assert ops == DEFAULTS and fill_mode == "min"
    assert not hasattr(augment, "_Number") and not hasattr(augment, "_check_op")  # no second copy in augment.py


@pytest.mark.parametrize("op, key, spec", _params(), ids=[f"{op}.{key}" for op, key, _ in _params()])
def test_every_out_of_range_value_names_path_value_and_allowed(op, key, spec):
    bound = getattr(spec, "bound", spec)  # a [low, high] pair checks each end with its bound
    too_high = bound.hi + 1
    value = [too_high, too_high] if spec is not bound else too_high
    with pytest.raises(ValueError) as e:
        OP_SPECS[op].from_config({key: value})
    message = str(e.value)
    assert f"{CONFIG_KEY}.{op}.{key} = {too_high!r} is out of range" in message, message
    assert bound.allowed() in message and str(bound.hi) in message
    with pytest.raises(ConfigError) as e:  # the pipeline config says the same
        validate_config({"pipeline_name": "p", "train": {"augmentation": {op: {key: value}}}})
    assert f"{CONFIG_KEY}.{op}.{key} = {too_high!r}" in str(e.value)


@pytest.mark.parametrize("augmentation, words", [
    ({"rotation": {"max_degrees": 10}}, ["train.augmentation.rotation.max_degrees", "Did you mean 'degrees'", "Allowed: p, degrees"]),
    ({"rotaton": {}}, ["'rotaton' (train.augmentation)", "Did you mean 'rotation'"]),
    ({"cutout": {"count": 1.5}}, ["train.augmentation.cutout.count", "an integer in [1, 16]", "1.5"]),
    ({"zoom": {"range": 1.0}}, ["train.augmentation.zoom.range", "[low, high] pair", "1.0"]),
    ({"fill_mode": "wrap"}, ["train.augmentation.fill_mode", "'wrap'", "min, nearest, reflect"]),
    ({"enabled": "yes"}, ["train.augmentation.enabled", "'yes'", "true or false"]),
])
def test_pipeline_config_errors_name_the_full_key(augmentation, words):
    with pytest.raises(ConfigError) as e:
        validate_config({"pipeline_name": "p", "train": {"augmentation": augmentation}})
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_the_schema_loads_without_tensorflow():
    code = "import sys, components.train.augment_config as c; c.parse_augmentation({'mixup': {}}); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
