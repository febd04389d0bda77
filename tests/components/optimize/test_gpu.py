"""GPU-only paths: TF-TRT conversion and a native TensorRT engine. Skipped here with the detected reason.

tests/conftest.py hides GPUs unless CUDA_VISIBLE_DEVICES is set, so on a GPU machine run:
    CUDA_VISIBLE_DEVICES=0 .venv/bin/python -m pytest tests/components/optimize -m gpu
"""
import pytest

from components.optimize.config import validate_optimize_config
from components.optimize.executor import run_optimizer
from serving.contract import read_label_names
from serving.optimized import load_optimized

from tests.components.optimize.helpers import tree_bytes

pytestmark = pytest.mark.gpu


def test_tf_trt_conversion_keeps_the_serving_contract(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if not accelerators.tf_trt_ready:
        pytest.skip(f"TF-TRT cannot run here: {accelerators.describe()}")
    config = validate_optimize_config({"engine": "tf-trt", "precision": "FP16", "batch_sizes": [1, 8], "parity_examples": 64})
    result = run_optimizer(saved_model_dir, eval_split_dir, str(tmp_path), config)
    assert result["status"] == "optimized", result
    assert set(result["parity_by_signature"]) == {"serving_default", "serving_images", "classification"}
    assert read_label_names(str(tmp_path / "Format-Serving")) == read_label_names(saved_model_dir)
    assert tree_bytes(str(tmp_path / "Format-Serving")) != tree_bytes(saved_model_dir)


def test_native_tensorrt_engine_build(tmp_path, saved_model_dir, eval_split_dir, accelerators):
    if not accelerators.tensorrt_ready:
        pytest.skip(f"native TensorRT cannot run here: {accelerators.describe()}")
    config = validate_optimize_config({"engine": "tensorrt", "precision": "FP16", "batch_sizes": [1, 32], "parity_examples": 64})
    result = run_optimizer(saved_model_dir, eval_split_dir, str(tmp_path), config)
    assert result["status"] in ("optimized", "kept_original"), result
    if result["status"] == "optimized":
        manifest = load_optimized(str(tmp_path / "Format-Serving"))
        assert manifest["engine"] == "tensorrt" and [a["format"] for a in manifest["artifacts"]] == ["onnx", "tensorrt_plan"]
