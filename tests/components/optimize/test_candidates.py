"""Candidates and gates: INT8 quantization on real eval data, the gate rules, and the GPU boundary."""
import importlib.util

import numpy as np
import pytest

from components.optimize.candidates import accuracy_gate, build_candidates, choose, speed_gate
from components.optimize.config import validate_optimize_config
from components.optimize.eval_data import read_eval_inputs
from components.optimize.onnx_export import EngineUnsupportedError, tensorrt_build_settings
from components.optimize.precision import fp16_unavailable

from tests.components.optimize.conftest import IMAGE_SHAPE

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="tf2onnx is not installed (pip install tf2onnx==1.17.0 onnxruntime==1.31.0)")
CPU = ["AzureExecutionProvider", "CPUExecutionProvider"]


def row(p50_ms, images_per_s, batch=256):
    return {"p50_ms_batch1": p50_ms, "p95_ms_batch1": p50_ms * 2, f"images_per_s_batch{batch}": images_per_s}


def test_speed_gate_needs_both_batch_sizes_faster():
    original = row(0.5, 1000.0)
    assert speed_gate(original, row(0.05, 1500.0), 256)["passed"]
    slow_batch = speed_gate(original, row(0.05, 900.0), 256)
    assert not slow_batch["passed"] and slow_batch["speedup"] == pytest.approx({"1": 10.0, "256": 0.9})
    assert not speed_gate(original, row(0.5, 5000.0), 256)["passed"], "equal latency is not faster"
    assert speed_gate(original, row(0.05, 900.0), 256, min_speedup=0.0)["passed"]


def test_accuracy_gate_allows_at_most_max_drop():
    labels = np.array([0, 1, 1, 0] * 50)  # 200 examples: one miss = 0.005
    right = np.eye(2)[labels]
    one_miss = right.copy()
    one_miss[0] = [0.0, 1.0]
    two_misses = one_miss.copy()
    two_misses[1] = [1.0, 0.0]
    assert accuracy_gate(right, one_miss, labels, 0.005)["passed"]
    failed = accuracy_gate(right, two_misses, labels, 0.005)
    assert not failed["passed"] and failed["delta"] == pytest.approx(-0.01) and failed["original"] == 1.0
    assert accuracy_gate(one_miss, right, labels, 0.0)["passed"], "a gain always passes"
    missing = accuracy_gate(right, right, None, 0.005)
    assert not missing["passed"] and "no integer `label` feature" in missing["reason"]


def test_choose_takes_the_fastest_passing_candidate():
    def result(precision, status, ups):
        return {"precision": precision, "status": status, "gates": {"speed": {"speedup": ups}}}

    results = [result("FP32", "passed", {"1": 10.0, "256": 1.5}), result("INT8", "passed", {"1": 8.0, "256": 2.5}),
               result("FP16", "failed", {"1": 50.0, "256": 5.0})]
    assert choose(results)["precision"] == "INT8"  # 20 > 15; the failed one never counts
    assert choose([results[2]]) is None


def test_fp16_needs_a_gpu_provider():
    why = fp16_unavailable(CPU)
    assert "FP16 needs a GPU" in why and "CPUExecutionProvider" in why
    assert fp16_unavailable(CPU + ["CUDAExecutionProvider"]) is None


@pytest.mark.parametrize(
    "precision, flags, expected_flags",
    [("FP32", ["FP16", "INT8"], []), ("FP16", ["FP16", "INT8"], ["FP16"])],
)
def test_tensorrt_build_settings(precision, flags, expected_flags):
    """The GPU boundary: what build_tensorrt_engine would ask TensorRT for (no GPU here)."""
    settings = tensorrt_build_settings(precision, (1, 8, 256), (8, 8, 1), builder_flags=flags, tensorrt_version="10.16.1")
    assert settings == {"flags": expected_flags, "profile": ((1, 8, 8, 1), (256, 8, 8, 1), (256, 8, 8, 1))}


def test_tensorrt_build_settings_refuse_what_tensorrt_cannot_build():
    with pytest.raises(EngineUnsupportedError, match="Q/DQ"):
        tensorrt_build_settings("INT8", (1,), (8, 8, 1), builder_flags=["FP16", "INT8"], tensorrt_version="10.16.1")
    with pytest.raises(EngineUnsupportedError, match="removed in TensorRT 11"):
        tensorrt_build_settings("FP16", (1,), (8, 8, 1), builder_flags=["STRONGLY_TYPED"], tensorrt_version="11.4")


@needs_onnx
def test_cpu_candidates_int8_is_quantized_and_calibrated_fp16_is_skipped(saved_model_dir, eval_split_dir):
    import onnx

    from components.optimize.onnx_export import export_onnx, onnxruntime_predictor
    from components.optimize.parity import compare_probabilities

    eval_inputs = read_eval_inputs(eval_split_dir, 1000, IMAGE_SHAPE)
    fp32 = export_onnx(saved_model_dir)
    candidates = {c.precision: c for c in build_candidates("onnx", validate_optimize_config({"calibration_examples": 64}), fp32, eval_inputs, CPU)}
    assert candidates["FP16"].skipped and "FP16 needs a GPU" in candidates["FP16"].skipped
    assert candidates["FP32"].files["model.onnx"] == fp32
    int8 = candidates["INT8"]
    assert int8.skipped is None and int8.providers == ["CPUExecutionProvider"]
    ops = {n.op_type for n in onnx.load_from_string(int8.files["model.onnx"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    reference = onnxruntime_predictor(fp32)(eval_inputs.images)
    quantized = int8.predictor(eval_inputs.images)
    assert compare_probabilities(reference, quantized, min_top1_agreement=0.95, max_prob_diff=0.2).passed
    assert np.abs(reference - quantized).max() > 0, "an INT8 model that matches FP32 bit for bit was not quantized"
    # The Softmax stays float: quantized to int8 its rows sum to 255/256, and the infra validator
    # (rightly) refuses probabilities that do not sum to 1.
    assert "Softmax" in {n.op_type for n in onnx.load_from_string(fp32).graph.node}
    np.testing.assert_allclose(quantized.sum(axis=1), 1.0, atol=1e-5)


@needs_onnx
def test_a_candidate_that_fails_to_build_is_skipped_with_the_error(saved_model_dir, eval_split_dir):
    from components.optimize.onnx_export import export_onnx

    eval_inputs = read_eval_inputs(eval_split_dir, 1000, IMAGE_SHAPE)[:0]  # nothing to calibrate on
    (int8,) = build_candidates("onnx", validate_optimize_config({"precision": "INT8"}), export_onnx(saved_model_dir), eval_inputs, CPU)
    assert int8.skipped.startswith("building it failed: ValueError: INT8 calibration needs at least one eval input")
