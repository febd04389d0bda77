"""run_optimizer on this machine: every outcome passes the right model through and says why."""
import importlib.util
import json
import os

import pytest

from components.optimize.config import validate_optimize_config
from components.optimize.executor import ONNX_FILE, RESULT_FILE, run_optimizer

from tests.optimize.helpers import tree_bytes

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx is not installed (pip install tf2onnx==1.17.0 onnxruntime==1.31.0)"
)


def run(saved_model_dir, eval_split_dir, out, **section):
    blessed = section.pop("_blessed", True)
    result = run_optimizer(saved_model_dir, eval_split_dir, str(out), validate_optimize_config(section), blessed=blessed)
    with open(os.path.join(out, RESULT_FILE)) as f:
        assert json.load(f) == json.loads(json.dumps(result)), "optimizer.json must match the returned result"
    return result


def assert_original_passed_through(saved_model_dir, out):
    assert tree_bytes(os.path.join(out, "Format-Serving")) == tree_bytes(saved_model_dir)


def test_auto_without_tensorrt_skips_with_the_detected_reason(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if accelerators.tf_trt_ready or accelerators.tensorrt_ready:
        pytest.skip(f"this machine can optimize ({accelerators.describe()}); the skip path does not apply")
    result = run(saved_model_dir, eval_split_dir, tmp_path)
    assert result["status"] == "skipped" and result["saved_model"] == "original"
    assert accelerators.describe() in result["reason"]
    assert "is_tensorrt_enabled() is False" in result["reason"]
    assert ("no GPU visible" in result["reason"]) == (not accelerators.gpus)
    assert_original_passed_through(saved_model_dir, tmp_path)


def test_requested_engine_that_cannot_run_is_skipped_not_failed(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if accelerators.tf_trt_ready:
        pytest.skip("TF-TRT can run here")
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="tf-trt")
    assert result["status"] == "skipped" and "engine 'tf-trt' was requested but cannot run here" in result["reason"]
    assert_original_passed_through(saved_model_dir, tmp_path)


@pytest.mark.parametrize(
    "section, eval_split, reason",
    [
        ({"engine": "none"}, True, "optimize.engine is 'none'"),
        ({"engine": "onnx", "_blessed": False}, True, "not blessed"),
        ({"engine": "onnx"}, False, "no 'eval' split"),
    ],
)
def test_other_skips_say_why(tmp_path, saved_model_dir, eval_split_dir, section, eval_split, reason):
    result = run(saved_model_dir, eval_split_dir if eval_split else None, tmp_path, **section)
    assert result["status"] == "skipped" and reason in result["reason"]
    assert_original_passed_through(saved_model_dir, tmp_path)


def test_empty_eval_split_is_a_skip(tmp_path, saved_model_dir):
    empty = tmp_path / "Split-eval"
    empty.mkdir()
    result = run(saved_model_dir, str(empty), tmp_path / "out", engine="onnx")
    assert result["status"] == "skipped" and "no eval examples" in result["reason"]


@needs_onnx
def test_onnx_engine_exports_model_and_keeps_the_original_saved_model(tmp_path, saved_model_dir, eval_split_dir):
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="onnx", parity_examples=64)
    assert result["status"] == "exported" and result["engine"] == "onnx" and result["saved_model"] == "original"
    assert result["parity"]["passed"] and result["parity"]["examples"] == 64
    assert result["parity"]["top1_agreement"] == 1.0 and result["parity"]["max_prob_diff"] < 1e-5
    assert "TF Serving cannot serve ONNX" in result["note"] and "ONNX export is FP32" in result["note"]
    assert (tmp_path / ONNX_FILE).stat().st_size > 1000
    assert (tmp_path / "onnx" / "label_names.txt").read_text().split() == [str(d) for d in range(10)]
    assert_original_passed_through(saved_model_dir, tmp_path)


@needs_onnx
def test_onnx_parity_failure_passes_the_original_and_writes_no_onnx(tmp_path, saved_model_dir, eval_split_dir):
    # A zero tolerance: ONNX Runtime's kernels round differently from TensorFlow's.
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="onnx", precision="FP32", parity_max_prob_diff=0.0)
    if result["status"] == "exported":
        pytest.skip("ONNX Runtime matched TensorFlow bit for bit, so a zero tolerance cannot provoke a parity failure")
    assert result["status"] == "parity_failed" and "original model is passed through" in result["reason"]
    assert result["parity"]["max_prob_diff"] > 0.0 and not result["parity"]["passed"]
    assert not (tmp_path / ONNX_FILE).exists()
    assert_original_passed_through(saved_model_dir, tmp_path)


@needs_onnx
def test_model_without_serving_images_is_skipped_not_failed(tmp_path, saved_model_dir, eval_split_dir):
    """A text model has serving_text, not serving_images: ONNX/TensorRT do not apply; say so."""
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    text_like = str(tmp_path / "text_like")
    shutil.copytree(saved_model_dir, text_like)
    pb = os.path.join(text_like, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        del meta_graph.signature_def["serving_images"]
    with open(pb, "wb") as f:
        f.write(saved_model.SerializeToString())
    out = tmp_path / "out"
    result = run(text_like, eval_split_dir, out, engine="onnx")
    assert result["status"] == "skipped" and "has no serving_images signature (a text model)" in result["reason"]
    assert_original_passed_through(text_like, out)
