"""The registry: names, defaults, and the errors users see for bad requests."""
import keras
import numpy as np
import pytest

from models import create_model, list_models, register_model
from models import registry

EXPECTED_MODELS = {
    "digits_cnn", "lenet5", "vgg11", "vgg16",
    "resnet20", "resnet56", "resnet20_v2", "resnet18", "resnet50", "resnet50_v2",
    "densenet_bc_100", "mobilenet_v2",
    "lstm", "gru", "bilstm", "row_lstm", "text_bilstm",
}
CNN_OPTIONS = {"batch_norm", "dropout", "weight_decay"}


def test_list_models_names_every_family_with_defaults():
    models = list_models()
    assert set(models) == EXPECTED_MODELS
    for name, defaults in models.items():
        if name not in {"lstm", "gru", "bilstm", "row_lstm", "text_bilstm"}:
            assert CNN_OPTIONS <= set(defaults), f"{name} lacks the shared CNN options"
    assert models["resnet56"]["depth"] == 56 and models["resnet50"]["block"] == "bottleneck"
    assert models["resnet20_v2"]["version"] == 2
    assert models["text_bilstm"]["vocab_size"] == 20000


def test_list_models_returns_a_copy():
    list_models()["resnet20"]["depth"] = 1000
    assert list_models()["resnet20"]["depth"] == 20


def test_unknown_model_names_it_and_lists_registered():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet9000'.*resnet20.*vgg16"):
        create_model("resnet9000", (8, 8, 1), 10)


def test_unknown_hparam_names_it_and_lists_allowed():
    with pytest.raises(ValueError, match=r"'widht'.*'vgg11'.*Allowed: base_filters, batch_norm, blocks"):
        create_model("vgg11", (8, 8, 1), 10, widht=8)


@pytest.mark.parametrize("spec", [(), (8, 0, 1), (8.0, 8, 1), "8x8", None])
def test_bad_input_spec(spec):
    with pytest.raises(ValueError, match="input_spec must be a tuple of positive ints"):
        create_model("digits_cnn", spec, 10)


@pytest.mark.parametrize("num_classes", [0, 1, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        create_model("digits_cnn", (8, 8, 1), num_classes)


@pytest.mark.parametrize(
    "name, spec, message",
    [
        ("resnet20", (8, 8), r"resnet expects an image input_spec \(height, width, channels\)"),
        ("lstm", (50,), r"sequence models expect .*use 'text_bilstm'"),
        ("text_bilstm", (8, 8, 1), r"text_bilstm expects token ids input_spec \(seq_len,\)"),
    ],
)
def test_wrong_input_rank_says_what_is_expected(name, spec, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, spec, 10)


@pytest.mark.parametrize(
    "name, hparams, message",
    [
        ("resnet20", {"depth": 21}, r"depth 21 is not valid for the cifar stem with basic blocks; use 6n \+ 2"),
        ("resnet20", {"depth": 24, "block": "bottleneck"}, r"depth 24 .*use 9n \+ 2, e.g. 11, 20, 29"),
        ("resnet18", {"depth": 19}, r"depth 19 is not defined for the imagenet stem .*\[10, 18, 34\]"),
        ("resnet18", {"version": 3}, r"version must be one of \[1, 2\]"),
        ("densenet_bc_100", {"depth": 99}, r"depth 99 is not of the form 6n \+ 4"),
        ("densenet_bc_100", {"compression": 0}, r"compression must be in \(0, 1\]"),
        ("mobilenet_v2", {"width_multiplier": 0}, "width_multiplier must be > 0"),
        ("vgg11", {"blocks": ()}, "blocks must be a non-empty sequence"),
        ("digits_cnn", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("lenet5", {"weight_decay": -1e-4}, "weight_decay must be >= 0"),
        ("lstm", {"cell": "rnn"}, r"cell must be one of \['gru', 'lstm'\]"),
    ],
)
def test_bad_hparam_values_are_named(name, hparams, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, (8, 8, 1), 10, **hparams)


def test_model_is_named_after_its_registry_entry():
    assert create_model("lenet5", (8, 8, 1), 10).name == "lenet5"


def test_register_model_custom_family(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the real registry untouched

    @register_model("tiny_mlp", units=4)
    def tiny_mlp(input_spec, num_classes, *, units):
        inputs = keras.Input(input_spec)
        x = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, dtype="float32", name="logits")(x))

    assert list_models()["tiny_mlp"] == {"units": 4}
    model = create_model("tiny_mlp", (3, 2), 5, units=7)
    assert model.get_layer("logits").output.shape == (None, 5)
    assert model(np.zeros((2, 3, 2), "float32")).shape == (2, 5)
    with pytest.raises(ValueError, match="'tiny_mlp' is already registered"):
        register_model("tiny_mlp")(tiny_mlp)
    with pytest.raises(ValueError, match="is not valid"):
        register_model("tiny-mlp")
