"""run_optimizer on this machine: every outcome passes the right model through and says why."""
import importlib.util
import json
import os

import pytest

import tensorflow as tf

from components.optimize.config import validate_optimize_config
from components.optimize.executor import RESULT_FILE, run_optimizer
from serving import optimized

from tests.components.optimize.helpers import tree_bytes

# The speed gate is measured on a shared 2-core machine; tests about the artifact and its
# manifest take the speed requirement out (min_speedup 0) and say so. The speed gate itself
# is tested deterministically below (min_speedup 1000) and in test_candidates.py.
ANY_SPEED = {"min_speedup": 0.0, "timing_seconds": 0.2}

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


def assert_original_plus_artifact(saved_model_dir, out):
    """Format-Serving = the original, byte for byte, plus assets.extra/optimized/ (nothing else)."""
    files = tree_bytes(os.path.join(out, "Format-Serving"))
    extra = {k for k in files if k.startswith(optimized.OPTIMIZED_DIR + os.sep)}
    assert extra, "no optimized artifact was written"
    assert {k: v for k, v in files.items() if k not in extra} == tree_bytes(saved_model_dir)


@needs_onnx
def test_auto_on_cpu_attaches_a_gated_onnxruntime_artifact(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if accelerators.tf_trt_ready or accelerators.tensorrt_ready:
        pytest.skip(f"this machine has a TensorRT path ({accelerators.describe()}); auto does not pick ONNX Runtime")
    result = run(saved_model_dir, eval_split_dir, tmp_path, **ANY_SPEED)
    assert result["status"] == "optimized" and result["engine"] == "onnxruntime" and result["saved_model"] == "original", result
    statuses = {c["precision"]: c["status"] for c in result["candidates"]}
    assert statuses["FP16"] == "skipped" and "FP16 needs a GPU" in next(c["reason"] for c in result["candidates"] if c["precision"] == "FP16")
    assert statuses["FP32"] == "passed" and statuses["INT8"] in ("passed", "failed")
    assert_original_plus_artifact(saved_model_dir, tmp_path)

    version = os.path.join(tmp_path, "Format-Serving")
    manifest = optimized.load_optimized(version)  # the server's check: gates passed, files intact
    assert manifest["precision"] == result["precision"] in ("fp32", "int8")
    (art,) = manifest["artifacts"]
    assert art["signature"] == "serving_images" and art["format"] == "onnx" and art["file"] == "model.onnx"
    assert art["inputs"] == [{"name": "images", "dtype": "uint8", "shape": [-1, 8, 8, 1]}]
    assert art["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}]
    assert optimized.read_labels(version, manifest) == [str(d) for d in range(10)]
    assert manifest["signatures"]["serving_default"].startswith("tensorflow") and manifest["signatures"]["classification"].startswith("tensorflow")
    assert manifest["execution_providers"]["used"] == ["CPUExecutionProvider"]
    gates = manifest["gates"]
    assert gates["parity"]["passed"] and gates["parity"]["examples"] == 96
    assert gates["accuracy"]["examples"] == 96 and abs(gates["accuracy"]["delta"]) <= 0.005
    assert set(gates["speed"]["speedup"]) == {"1", "256"} and gates["speed"]["original"]["p50_ms_batch1"] > 0
    assert {"onnx", "onnxruntime", "tf2onnx", "tensorflow"} <= set(manifest["versions"])
    assert result["summary"]["engine"] == "onnxruntime" and set(result["summary"]) >= {"accuracy_delta", "speedup_batch1", "speedup_batch256"}

    # TF Serving still gets a plain SavedModel: same signatures, same outputs.
    original, output = tf.saved_model.load(saved_model_dir), tf.saved_model.load(version)
    assert sorted(output.signatures) == sorted(original.signatures)
    for key in original.signatures:
        assert output.signatures[key].structured_outputs.keys() == original.signatures[key].structured_outputs.keys()


@needs_onnx
def test_an_artifact_that_is_not_fast_enough_is_not_used(tmp_path, saved_model_dir, eval_split_dir):
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="onnx", precision="FP32", min_speedup=1000.0, timing_seconds=0.2)
    assert result["status"] == "kept_original" and "speed gate" in result["reason"], result
    assert "at batch 1" in result["reason"] and "at batch 256" in result["reason"]
    (candidate,) = result["candidates"]
    assert candidate["gates"]["parity"]["passed"] and not candidate["gates"]["speed"]["passed"]
    assert result["summary"]["speedup_batch1"] > 0 and result["summary"]["speedup_batch256"] > 0, "the numbers are kept"
    assert_original_passed_through(saved_model_dir, tmp_path)


@needs_onnx
def test_a_stale_artifact_in_the_input_is_not_passed_on(tmp_path, saved_model_dir, eval_split_dir):
    """A model that already carries assets.extra/optimized (e.g. re-optimized) never keeps an ungated one."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(saved_model_dir, model)
    run(str(model), eval_split_dir, tmp_path / "first", engine="onnx", precision="FP32", **ANY_SPEED)
    shutil.copytree(tmp_path / "first" / "Format-Serving" / "assets.extra", model / "assets.extra")
    result = run(str(model), eval_split_dir, tmp_path / "second", engine="onnx", precision="FP32", min_speedup=1000.0, timing_seconds=0.2)
    assert result["status"] == "kept_original"
    assert not (tmp_path / "second" / "Format-Serving" / "assets.extra").exists()


def test_requested_engine_that_cannot_run_is_skipped_not_failed(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if accelerators.tf_trt_ready:
        pytest.skip("TF-TRT can run here")
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="tf-trt")
    assert result["status"] == "skipped" and "engine 'tf-trt' was requested but cannot run here" in result["reason"]
    assert "is_tensorrt_enabled() is False" in result["reason"]
    assert_original_passed_through(saved_model_dir, tmp_path)


def test_auto_without_any_engine_skips_with_the_detected_reason(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    import dataclasses

    nothing = dataclasses.replace(accelerators, tf_trt_enabled=False, tensorrt_version=None, tf2onnx_version=None, onnxruntime_version=None)
    result = run_optimizer(saved_model_dir, eval_split_dir, str(tmp_path), validate_optimize_config({}), accelerators=nothing)
    assert result["status"] == "skipped" and "no optimizing engine on this machine" in result["reason"]
    assert "tf2onnx and onnxruntime not installed" in result["reason"]
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
def test_parity_failure_keeps_the_original_and_writes_no_artifact(tmp_path, saved_model_dir, eval_split_dir):
    # A zero tolerance: ONNX Runtime's kernels round differently from TensorFlow's.
    result = run(saved_model_dir, eval_split_dir, tmp_path, engine="onnx", precision="FP32", parity_max_prob_diff=0.0, **ANY_SPEED)
    if result["status"] == "optimized":
        pytest.skip("ONNX Runtime matched TensorFlow bit for bit, so a zero tolerance cannot provoke a parity failure")
    assert result["status"] == "kept_original" and "parity gate" in result["reason"] and "served by TensorFlow" in result["reason"]
    (candidate,) = result["candidates"]
    assert candidate["gates"]["parity"]["max_prob_diff"] > 0.0 and not candidate["gates"]["parity"]["passed"]
    assert_original_passed_through(saved_model_dir, tmp_path)


@needs_onnx
def test_text_signature_whose_ops_do_not_convert_stays_on_tensorflow(tmp_path, text_saved_model_dir, text_eval_split_dir):
    result = run(text_saved_model_dir, text_eval_split_dir, tmp_path, engine="onnx")
    assert result["status"] == "kept_original", result
    assert {"StaticRegexReplace", "StringSplitV2"} <= set(result["unsupported_ops"])
    assert "serving_text: TensorFlow ops" in result["reason"] and "stays on TensorFlow" in result["reason"]
    assert "nodes ['LookupTableFindV2'] failed to convert" in result["reason"]
    assert result["signatures"]["serving_text"].startswith("tensorflow: ")
    assert_original_passed_through(text_saved_model_dir, tmp_path)


@needs_onnx
def test_model_without_a_raw_input_signature_is_skipped_not_failed(tmp_path, saved_model_dir, eval_split_dir):
    """Neither serving_images nor serving_text: nothing to start an export from; say so."""
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
    assert result["status"] == "skipped" and "has neither serving_images nor serving_text" in result["reason"]
    assert_original_passed_through(text_like, out)
