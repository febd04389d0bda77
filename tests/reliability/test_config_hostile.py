"""Hostile or absurd configs: exit 2 with a message naming the key, the value and the fix."""
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, load_config, make_output_dirs, validate_config
from tests.pipeline.test_config import REPO, base


def _cli(path):
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _write(tmp_path, cfg):
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _assert_exit_2(p, *words):
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr + p.stdout
    for w in words:
        assert w in p.stderr, (w, p.stderr[-2000:])


def test_cli_non_utf8_yaml_exits_2(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("pipeline_name: caf\u00e9\n".encode("latin-1"))
    _assert_exit_2(_cli(path), str(path), "not UTF-8", "0xe9", "save it as UTF-8")


def test_cli_runs_dir_that_is_a_file_exits_2(tmp_path):
    cfg = base()
    cfg["runs_dir"] = str(tmp_path / "a_file")
    (tmp_path / "a_file").write_text("x")
    _assert_exit_2(_cli(_write(tmp_path, cfg)), "runs_dir", str(tmp_path / "a_file"), "is a file", "directory")


def test_cli_split_that_is_not_a_name_exits_2(tmp_path):
    cfg = base()
    cfg["data"]["splits"] = {"train": 5, "eval": "validation", "test": "test"}
    _assert_exit_2(_cli(_write(tmp_path, cfg)), "data.splits.train", "5", "source split name")


def test_cli_data_dir_the_os_refuses_to_create_exits_2(tmp_path):
    """/proc passes the up-front check (root may write there) but refuses a new directory."""
    cfg = base()
    cfg["runs_dir"] = str(tmp_path / "runs")
    cfg["data"]["data_dir"] = "/proc/no_such_dir/tfds"
    _assert_exit_2(_cli(_write(tmp_path, cfg)), "data.data_dir", "/proc/no_such_dir/tfds", "cannot create it")


def test_unreadable_yaml_file_is_a_config_error():
    with pytest.raises(ConfigError, match="config file '/proc/self/mem' cannot be read"):  # read(2) fails: EIO
        load_config("/proc/self/mem")


def test_data_dir_under_a_file_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("x")
    cfg = base()
    cfg["data"]["data_dir"] = str(tmp_path / "f" / "tfds")
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    assert "data.data_dir" in str(e.value) and f"under '{tmp_path / 'f'}', which is not a directory" in str(e.value)


def test_make_output_dirs_creates_the_run_directories(tmp_path):
    cfg = base()
    cfg["runs_dir"] = str(tmp_path / "runs")
    cfg = validate_config(cfg)
    make_output_dirs(cfg)
    assert os.path.isdir(tmp_path / "runs" / "tensorflow_datasets") and os.path.isdir(tmp_path / "runs" / "serving")


def test_yaml_inf_is_refused_when_loaded(tmp_path):
    text = (open(os.path.join(REPO, "configs", "digits_cnn.yaml")).read()
            .replace("learning_rate: 0.002", "learning_rate: .inf"))
    path = tmp_path / "inf.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"train.learning_rate.*inf.*finite"):
        load_config(str(path))


@pytest.mark.parametrize(
    "name, words",
    [
        ("Accuracyy", ["evaluate.metrics[0].name", "unknown metric 'Accuracyy'", "TFMA", "did you mean", "Accuracy"]),
        ("NoSuchMetricAtAll", ["unknown metric 'NoSuchMetricAtAll'", "e.g. SparseCategoricalAccuracy"]),
        ("Mean", ["metric 'Mean' cannot be built without arguments", "feature_key_path"]),
    ],
)
def test_unknown_tfma_metric_is_refused_at_load(name, words):
    cfg = base()
    cfg["evaluate"]["metrics"] = [{"name": name, "lower_bound": 0.5}]
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_tfma_and_keras_metric_names_are_accepted():
    cfg = base()
    cfg["evaluate"]["metrics"] = [{"name": "AUC", "lower_bound": 0.5},  # TFMA's registry
                                  {"name": "SparseTopKCategoricalAccuracy", "lower_bound": 0.5}]  # a Keras metric
    assert [m["name"] for m in validate_config(cfg)["evaluate"]["metrics"]] == ["AUC", "SparseTopKCategoricalAccuracy"]


def test_scheduler_reads_a_non_utf8_config_as_a_clear_error(tmp_path):
    from pipeline.schedule import ScheduleError, pipeline_name_for

    path = tmp_path / "latin1.yaml"
    path.write_bytes("pipeline_name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ScheduleError, match="not UTF-8 text.*save it as UTF-8"):
        pipeline_name_for(path)


def test_a_directory_the_os_refuses_is_a_config_error_before_the_run(tmp_path):
    cfg = base()
    cfg["runs_dir"] = str(tmp_path / "runs")
    cfg["push"]["serving_base"] = "/proc/no_such_dir/serving"
    cfg = validate_config(cfg)  # validation creates nothing and needs no write access (compile runs it elsewhere)
    assert not os.path.exists(tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"push.serving_base.*'/proc/no_such_dir/serving': cannot create it \(No such file or directory\)"):
        make_output_dirs(cfg)
