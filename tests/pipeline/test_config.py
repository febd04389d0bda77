"""Config validation: every user error names the key, the bad value and what is allowed."""
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import MAX_EPOCHS, ConfigError, load_config, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def _is_pipeline_config(name: str) -> bool:  # configs/ also holds e.g. thresholds.yaml for `validate`
    with open(os.path.join(REPO, "configs", name)) as f:
        return "pipeline_name" in (yaml.safe_load(f) or {})


CONFIGS = sorted(f for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".yaml") and _is_pipeline_config(f))


def base():
    with open(os.path.join(REPO, "configs", "digits_cnn.yaml")) as f:
        return yaml.safe_load(f)


def test_default_config_fills_defaults():
    cfg = validate_config(base())
    assert cfg["train"]["precision"] == "auto"
    assert cfg["push"]["serving_base"] == os.path.join("runs", "serving")
    assert cfg["data"]["data_dir"] == os.path.join("runs", "tensorflow_datasets")


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda c: c["train"].update(epocs=3), ["train.epocs", "Allowed keys", "epochs"]),
        (lambda c: c.update(trian={}), ["'trian'", "Allowed keys"]),
        (lambda c: c["train"].update(precision="fp16"), ["train.precision", "'fp16'", "mixed_float16"]),
        (lambda c: c["train"].update(epochs="ten"), ["train.epochs", "'ten'", "int"]),
        (lambda c: c["train"].update(epochs=0), ["train.epochs", ">= 1"]),
        (lambda c: c["data"].update(source="csv"), ["data.source", "'csv'", "image_folder"]),
        (lambda c: c["model"].update(name="resnet9000"), ["model.name", "'resnet9000'", "digits_cnn"]),
        (lambda c: c["model"].update(hparams={"widht": 2}), ["model.hparams.widht", "Allowed keys"]),
        (lambda c: c["push"].update(model_name="../etc"), ["push.model_name", "'../etc'"]),
        (lambda c: c["evaluate"].update(accuracy={"lower_bound": 1.5}), ["evaluate.accuracy.lower_bound", "1.5", "[0, 1]"]),
        (lambda c: c["data"].update(splits={"train": "train"}), ["data.splits", "train, eval and test"]),
        (lambda c: c.pop("pipeline_name"), ["missing required config key 'pipeline_name'"]),
        # absurd or hostile values (issue 11)
        (lambda c: c.update(beam_args=[1, 2]), ["beam_args[0]", "1", "'--direct_num_workers=1'"]),
        (lambda c: c.update(beam_args=["direct_num_workers=1"]), ["beam_args[0]", "'direct_num_workers=1'", "Beam pipeline option"]),
        (lambda c: c["data"].update(splits={"train": 5, "eval": "validation", "test": "test"}), ["data.splits.train", "5", "source split name"]),
        (lambda c: c["data"].update(label_names=["a", None]), ["data.label_names[1]", "None", "class name"]),
        (lambda c: c["train"].update(epochs=1000000000000), ["train.epochs", "1000000000000", f"at most {MAX_EPOCHS:,}"]),
        (lambda c: c["train"].update(learning_rate=float("inf")), ["train.learning_rate", "inf", "finite"]),
        (lambda c: c["train"].update(learning_rate=float("nan")), ["train.learning_rate", "nan", "finite"]),
        (lambda c: c["train"].update(momentum=float("-inf")), ["train.momentum", "-inf", "finite"]),
        (lambda c: c["train"].update(warmup_epochs=-5), ["train.warmup_epochs", "-5", "[0, train.epochs = 30]"]),
        (lambda c: c["train"].update(warmup_epochs=31), ["train.warmup_epochs", "31", "[0, train.epochs = 30]"]),
        (lambda c: c["evaluate"].update(metrics=[{"name": "AUC", "lower_bound": float("nan")}]), ["evaluate.metrics[0].lower_bound", "nan", "finite"]),
        (lambda c: c["evaluate"].update(metrics=[{"name": 7, "lower_bound": 0.5}]), ["evaluate.metrics[0].name", "7", "metric class name"]),
    ],
)
def test_bad_config_errors_name_key_value_and_fix(mutate, words):
    cfg = base()
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_validates(name):
    cfg = load_config(os.path.join(REPO, "configs", name))
    assert cfg["pipeline_name"]


def test_cli_bad_config_exits_2_without_traceback(tmp_path):
    cfg = base()
    cfg["train"]["optimizer"] = "adamax"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "pipeline", "run", "--config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "train.optimizer" in p.stderr and "'adamax'" in p.stderr and "sgd, adam, adamw" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_cli_missing_config_file_exits_2():
    p = subprocess.run([sys.executable, "-m", "pipeline", "run", "--config", "nope.yaml"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr




@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_builds_its_model(name):
    """Parse + model build, even where the dataset is not on this machine."""
    from models import create_model

    from models import TOKEN_MODELS

    cfg = load_config(os.path.join(REPO, "configs", name))
    model_name, hparams = cfg["model"]["name"], dict(cfg["model"]["hparams"])
    if model_name in TOKEN_MODELS:  # the pipeline sizes the vocabulary from the Transform's
        spec = (cfg["data"]["text"]["sequence_length"],)
        hparams["vocab_size"] = cfg["data"]["text"]["max_tokens"] + 2
    else:
        spec = tuple(cfg["data"]["image_shape"] or (8, 8, 1))  # sklearn_digits is 8x8x1
    num_classes = len(cfg["data"]["label_names"] or []) or (2 if model_name in TOKEN_MODELS else 10)
    model = create_model(model_name, spec, num_classes, **hparams)
    assert model.output_shape == (None, num_classes)


def test_bad_augmentation_is_a_config_error():
    cfg = base()
    cfg["train"]["augmentation"] = {"rotation": {"max_degrees": 10}}
    with pytest.raises(ConfigError, match="train.augmentation.*max_degrees.*degrees"):
        validate_config(cfg)


@pytest.mark.parametrize(
    "train, message",
    [
        ({"schedule": "step", "schedule_args": {"boundaries": [100, 50]}}, r"train.schedule_args.*strictly increasing"),
        ({"schedule": "cosine", "schedule_args": {"boundaries": [1]}}, r"train.schedule_args.*'boundaries'.*Allowed: min_lr"),
        ({"optimizer": "adam", "nesterov": True}, r"train.optimizer.*nesterov applies to 'sgd' only"),
    ],
)
def test_schedule_and_optimizer_options_are_checked_up_front(train, message):
    cfg = base()
    cfg["train"].update(train)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_schedule_args_and_nesterov_reach_the_builders():
    cfg = base()
    cfg["train"].update(optimizer="sgd", nesterov=True, schedule="step", schedule_args={"boundaries": [1000, 1500], "decay": 0.2})
    train = validate_config(cfg)["train"]
    assert train["nesterov"] is True and train["schedule_args"] == {"boundaries": [1000, 1500], "decay": 0.2}
