"""export-triton writes a Triton model repository that Triton's own ModelConfig proto parses.

No Triton server binary exists here, so the repository is checked by parsing config.pbtxt
with `tritonclient.grpc.model_config_pb2` (the proto tritonserver reads) and by running the
exported model.onnx with ONNX Runtime, the library Triton's onnxruntime backend uses.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

from serving import optimized
from serving.triton_export import TritonExportError, export_triton, main
from tests.serving import helpers

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (requirements-nodeps.txt)")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def serving_base(optimized_export, exported, tmp_path):
    base = tmp_path / "serving"
    helpers.push_version(exported[2], str(base / "digits"), 2)  # plain SavedModel, no artifact
    helpers.push_version(optimized_export, str(base / "digits"), 3)
    return base


def _config(repo) -> "model_config_pb2.ModelConfig":
    config = model_config_pb2.ModelConfig()
    with open(os.path.join(repo, "digits", "config.pbtxt")) as f:
        text_format.Parse(f.read(), config)  # strict: an unknown field or bad enum fails here
    return config


def test_export_writes_a_repository_tritons_model_config_parses(serving_base, tmp_path):
    repo = tmp_path / "repo"
    assert main(["--serving_base", str(serving_base), "--model", "digits", "--out", str(repo)]) == 0
    config = _config(repo)
    manifest = optimized.load_optimized(str(serving_base / "digits" / "3"))
    (artifact,) = manifest["artifacts"]
    assert config.name == "digits" and config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    (image_input,) = config.input
    assert image_input.name == artifact["inputs"][0]["name"] == "images"
    assert image_input.data_type == model_config_pb2.TYPE_UINT8 and list(image_input.dims) == [8, 8, 1]
    (probabilities,) = config.output
    assert probabilities.name == "probabilities" and probabilities.data_type == model_config_pb2.TYPE_FP32
    assert list(probabilities.dims) == [len(helpers.LABELS)] and probabilities.label_filename == "labels.txt"
    assert sorted(os.listdir(repo / "digits")) == ["3", "config.pbtxt", "labels.txt"], "latest version, no staging left"
    assert (repo / "digits" / "labels.txt").read_text().split() == helpers.LABELS
    with open(repo / "digits" / "3" / "model.onnx", "rb") as f, open(optimized.artifact_path(str(serving_base / "digits" / "3"), artifact), "rb") as g:
        exported_model = f.read()
        assert exported_model == g.read()
    import onnxruntime

    session = onnxruntime.InferenceSession(exported_model, providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"images": helpers.images(4)})
    assert probs.shape == (4, len(helpers.LABELS)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_export_refuses_versions_without_a_valid_artifact(serving_base, tmp_path):
    with pytest.raises(TritonExportError, match="carries no optimized artifact"):
        export_triton(str(serving_base), "digits", str(tmp_path / "repo"), version=2)
    manifest_path = optimized.manifest_path(str(serving_base / "digits" / "3"))
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["gates"]["parity"]["passed"] = False
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(TritonExportError, match="did not pass"):
        export_triton(str(serving_base), "digits", str(tmp_path / "repo"))
    with pytest.raises(TritonExportError, match="model name"):
        export_triton(str(serving_base), "../digits", str(tmp_path / "repo"))
    assert not os.path.exists(tmp_path / "repo" / "digits" / "3")


def test_export_triton_command_line(serving_base, tmp_path):
    repo = tmp_path / "repo"
    ok = subprocess.run([sys.executable, "-m", "serving", "export-triton", "--serving_base", str(serving_base), "--model", "digits",
                         "--version", "3", "--out", str(repo), "--max_batch_size", "32"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "tritonserver --model-repository" in ok.stdout and _config(repo).max_batch_size == 32
    bad = subprocess.run([sys.executable, "-m", "serving", "export-triton", "--serving_base", str(serving_base), "--model", "digits",
                          "--version", "2", "--out", str(repo)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "carries no optimized artifact" in bad.stderr and "Traceback" not in bad.stderr
