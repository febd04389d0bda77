"""`python -m pipeline validate` (pipeline/validate_cmd.cli): real SavedModels, the real
sklearn_digits TFDS dataset, exit codes 0/1/2 and the report files."""
import json
import os

import numpy as np
import pytest
import yaml

from components.train.export import export_serving_model
from pipeline.validate_cmd import UsageError, cli, parse_thresholds, resolve_model_path

DIGITS = [str(d) for d in range(10)]


def _dense_model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    return keras.Sequential(layers)


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory):
    """A serving base with version 1 = untrained and version 2 = trained (on the train split only)."""
    import keras
    from sklearn.datasets import load_digits

    from components.ingest.digits_builder import stratified_split_indices

    digits = load_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    train = stratified_split_indices(digits.target)["train"]
    trained = _dense_model(seed=1)
    trained.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # export_serving_model's default preprocessing: PNG -> float in [0, 1]; train on the same.
    trained.fit(images[train] / 255.0, digits.target[train], epochs=30, batch_size=64, verbose=0)
    base = tmp_path_factory.mktemp("serving") / "digits"
    export_serving_model(_dense_model(seed=2), str(base / "1"), image_shape=(8, 8, 1), label_names=DIGITS)
    export_serving_model(trained, str(base / "2"), image_shape=(8, 8, 1), label_names=DIGITS)
    return {"base": str(base), "untrained": str(base / "1"), "trained": str(base / "2"),
            "data_dir": str(tmp_path_factory.mktemp("tfds"))}


def _thresholds(tmp_path, content) -> str:
    path = tmp_path / "thresholds.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


GATES = {"accuracy": {"lower_bound": 0.9}, "per_class_recall": {"lower_bound": 0.7}, "max_accuracy_drop": 0.01,
         "metrics": [{"name": "macro_f1", "lower_bound": 0.85}]}


def test_trained_model_passes_with_a_pipeline_config(tmp_path, digits_models, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "p", "runs_dir": str(tmp_path / "runs"),
                                      "data": {"source": "tfds", "name": "sklearn_digits", "data_dir": digits_models["data_dir"]}}))
    report_dir = tmp_path / "report"
    code = cli(["--model", digits_models["base"], "--data", str(config), "--split", "test",
                "--thresholds", _thresholds(tmp_path, GATES), "--report-dir", str(report_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["passed"] and report["model"] == digits_models["trained"]  # the highest version
    assert report["num_examples"] == 270 and report["metrics"]["accuracy"] >= 0.9
    assert len([g for g in report["gates"] if g["metric"].startswith("recall[")]) == 10
    assert "max_accuracy_drop not checked: no --baseline" in report["notes"][0]
    assert "| accuracy |" in (report_dir / "report.md").read_text()
    assert "accuracy" in out and "PASSED" in out


def test_untrained_model_fails_the_gates_and_the_baseline_drop(tmp_path, digits_models, capsys):
    report_dir = tmp_path / "report"
    code = cli(["--model", digits_models["untrained"], "--baseline", digits_models["base"],
                "--data", "sklearn_digits:1.0.0/test", "--data-dir", digits_models["data_dir"],
                "--thresholds", _thresholds(tmp_path, GATES), "--report-dir", str(report_dir)])
    out = capsys.readouterr().out
    assert code == 1, out
    report = json.loads((report_dir / "report.json").read_text())
    failed = {g["metric"] for g in report["gates"] if not g["passed"]}
    assert {"accuracy", "macro_f1", "accuracy_drop_vs_baseline"} <= failed
    assert report["baseline"]["path"] == digits_models["trained"] and report["baseline"]["accuracy"] >= 0.9
    assert "FAIL" in out and "FAILED: accuracy" in out
    assert "**FAIL**" in (report_dir / "report.md").read_text()


USAGE_ERRORS = {  # case -> what stderr must say
    "missing_model": "--model '{tmp}/nope' is not a folder",
    "bad_yaml": "is not valid YAML",
    "unknown_key": "unknown thresholds key 'acuracy'. Allowed keys: accuracy, per_class_recall",
    "bad_bound": "thresholds key 'accuracy.lower_bound' has bad value 95: expected a number in [0, 1]",
    "unknown_metric": "thresholds key 'metrics[0].name' has bad value 'auc'. Allowed values: accuracy",
    "unknown_dataset": "--data 'no_such_dataset:1.0.0/test': unknown TFDS dataset 'no_such_dataset:1.0.0'",
    "bad_spec": "neither a config file (*.yaml) nor a TFDS spec",
    "missing_flag": "the following arguments are required: --thresholds",
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_exit_2_and_name_the_problem(case, tmp_path, digits_models, capsys):
    args = {"--model": digits_models["trained"], "--data": "sklearn_digits", "--thresholds": _thresholds(tmp_path, GATES),
            "--data-dir": digits_models["data_dir"], "--report-dir": str(tmp_path / "report")}
    if case == "missing_model":
        args["--model"] = str(tmp_path / "nope")
    elif case == "bad_yaml":
        args["--thresholds"] = _thresholds(tmp_path, "accuracy: [lower_bound: 0.9")
    elif case == "unknown_key":
        args["--thresholds"] = _thresholds(tmp_path, {"acuracy": {"lower_bound": 0.9}})
    elif case == "bad_bound":
        args["--thresholds"] = _thresholds(tmp_path, {"accuracy": {"lower_bound": 95}})
    elif case == "unknown_metric":
        args["--thresholds"] = _thresholds(tmp_path, {"metrics": [{"name": "auc", "lower_bound": 0.9}]})
    elif case == "unknown_dataset":
        args["--data"] = "no_such_dataset:1.0.0/test"
    elif case == "bad_spec":
        args["--data"] = "not a spec!"
    elif case == "missing_flag":
        del args["--thresholds"]
    code = cli([x for kv in args.items() for x in kv])
    err = capsys.readouterr().err
    assert code == 2
    assert USAGE_ERRORS[case].format(tmp=tmp_path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_model_path_forms(tmp_path):
    def saved_model(path):
        os.makedirs(path)
        open(os.path.join(path, "saved_model.pb"), "w").close()
        return str(path)

    serving = tmp_path / "serving"
    saved_model(serving / "digits" / "9")
    latest = saved_model(serving / "digits" / "10")
    os.makedirs(serving / "digits" / ".tmp-11")  # half-pushed versions are ignored
    assert resolve_model_path(latest) == latest
    assert resolve_model_path(str(serving / "digits")) == latest  # numeric, not string, order
    assert resolve_model_path(str(serving)) == latest  # a serving base with one model
    artifact = saved_model(tmp_path / "Trainer" / "model" / "3" / "Format-Serving")
    assert resolve_model_path(os.path.dirname(artifact)) == artifact
    saved_model(serving / "other" / "1")
    with pytest.raises(UsageError, match="holds several models \\(digits, other\\)"):
        resolve_model_path(str(serving))


def test_thresholds_need_a_gate():
    with pytest.raises(UsageError, match="thresholds set no gate"):
        parse_thresholds({"metrics": []})
    with pytest.raises(UsageError, match="lower_bound 0.9 is above upper_bound 0.5"):
        parse_thresholds({"accuracy": {"lower_bound": 0.9, "upper_bound": 0.5}})
