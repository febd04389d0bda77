"""Backends: a version's gated ONNX artifact serves through ONNX Runtime behind the same API.

The artifact is real: the project's ModelOptimizer made it from the test SavedModel
(helpers.optimize_version). Only the CPU execution provider exists here; the GPU providers
(TensorRT EP, CUDA EP) are tested up to their selection.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import sys

import grpc
import numpy as np
import pytest
import requests
from tensorflow import make_ndarray
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from serving import optimized
from serving.server.backends import BackendOptions, choose_backends
from serving.server.backends.onnx_backend import providers_for_host
from serving.server.servable import read_signature_defs
from serving.server.tensors import to_tensor_proto
from serving.server.warmup import write_warmup_file
from tests.serving import helpers
from tests.serving.conftest import running_server

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime, see requirements.txt)")
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


def _status(stubs, version=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    if version is not None:
        request.model_spec.version.value = version
    return {s.version: s for s in stubs.models.GetModelStatus(request, timeout=10).model_version_status}


def _predict(stubs, images, signature="serving_images"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = signature
    request.inputs["images"].CopyFrom(to_tensor_proto(images))
    return stubs.predict.Predict(request, timeout=10)


def _backend_metrics(server) -> dict:
    text = server.metrics.exposition().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("serving_signature_backend{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            found[labels["signature"].strip('"')] = labels["backend"].strip('"')
    return found


@pytest.fixture
def optimized_base(optimized_export, tmp_path):
    base = tmp_path / "digits"
    helpers.push_version(optimized_export, str(base), 1)
    return base


def test_auto_serves_the_artifact_with_onnxruntime_and_says_so(optimized_base):
    with running_server(optimized_base) as (server, stubs):
        status = _status(stubs)[1]
        assert status.state == AVAILABLE and status.status.error_code == 0
        assert "serving_images: onnxruntime (CPUExecutionProvider, fp32)" in status.status.error_message
        assert "other signatures: tensorflow" in status.status.error_message
        assert _backend_metrics(server) == {"serving_images": "onnxruntime", "serving_default": "tensorflow", "classification": "tensorflow"}
        (version,) = server.manager.loaded_versions()
        assert version.signature("serving_images").backend.name == "onnxruntime"
        assert version.signature("serving_default").backend.name == "tensorflow"  # parses tf.Example: stays on TF
        response = _predict(stubs, helpers.images(3))
        assert response.outputs["probabilities"].dtype == types_pb2.DT_FLOAT
        assert response.outputs["classes"].dtype == types_pb2.DT_STRING
        assert make_ndarray(response.outputs["classes"]).tolist() == [[b"cat", b"dog", b"bird"]] * 3


def test_both_backends_answer_the_same_requests_within_the_parity_bound(optimized_base, tmp_path):
    manifest = optimized.load_optimized(str(optimized_base / "1"))
    bound = manifest["gates"]["parity"]["max_prob_diff_bound"]
    images = helpers.images(64, seed=5)
    answers = {}
    for backend in ("tensorflow", "onnxruntime"):
        with running_server(optimized_base, backend=backend) as (server, stubs):
            assert _backend_metrics(server)["serving_images"] == backend
            grpc_answer = _predict(stubs, images)
            rest = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/digits:predict",
                                 json={"signature_name": "serving_images", "instances": images[:4].tolist()}, timeout=10)
            assert rest.status_code == 200, rest.text
            answers[backend] = (grpc_answer, rest.json()["predictions"])
    (tf_grpc, tf_rest), (ort_grpc, ort_rest) = answers["tensorflow"], answers["onnxruntime"]
    assert sorted(tf_grpc.outputs) == sorted(ort_grpc.outputs) == ["classes", "probabilities"]
    for key in tf_grpc.outputs:
        assert tf_grpc.outputs[key].dtype == ort_grpc.outputs[key].dtype
        assert tf_grpc.outputs[key].tensor_shape == ort_grpc.outputs[key].tensor_shape
    tf_probs, ort_probs = (make_ndarray(r.outputs["probabilities"]) for r in (tf_grpc, ort_grpc))
    assert np.max(np.abs(tf_probs - ort_probs)) <= bound
    assert (tf_probs.argmax(1) == ort_probs.argmax(1)).mean() >= manifest["gates"]["parity"]["min_top1_agreement"]
    assert make_ndarray(tf_grpc.outputs["classes"]).tolist() == make_ndarray(ort_grpc.outputs["classes"]).tolist()
    assert [row["classes"] for row in tf_rest] == [row["classes"] for row in ort_rest]
    assert np.max(np.abs(np.array([r["probabilities"] for r in tf_rest]) - np.array([r["probabilities"] for r in ort_rest]))) <= bound


def _corrupt_truncated(version_dir):
    path = os.path.join(optimized.optimized_dir(version_dir), optimized.ONNX_FILE)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return "does not match its manifest"


def _corrupt_failed_gates(version_dir):
    path = optimized.manifest_path(version_dir)
    with open(path) as f:
        manifest = json.load(f)
    manifest["gates"]["accuracy"]["passed"] = manifest["gates"]["passed"] = False
    with open(path, "w") as f:
        json.dump(manifest, f)
    return "did not pass (accuracy)"


def _corrupt_manifest_json(version_dir):
    with open(optimized.manifest_path(version_dir), "w") as f:
        f.write("{not json")
    return "is not valid JSON"


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_failed_gates, _corrupt_manifest_json])
def test_a_bad_artifact_falls_back_to_tensorflow_with_the_reason_in_status(optimized_export, tmp_path, corrupt):
    source = tmp_path / "source"
    shutil.copytree(optimized_export, source)
    reason = corrupt(str(source))
    base = tmp_path / "digits"
    helpers.push_version(str(source), str(base), 1)
    with running_server(base) as (server, stubs):
        status = _status(stubs)[1]
        assert status.state == AVAILABLE and status.status.error_code == 0, "a bad artifact is never an outage"
        assert status.status.error_message.startswith("all signatures: tensorflow (optimized artifact not used: ")
        assert reason in status.status.error_message
        assert set(_backend_metrics(server).values()) == {"tensorflow"}
        response = _predict(stubs, helpers.images(2))
        assert make_ndarray(response.outputs["probabilities"]).shape == (2, len(helpers.LABELS))


def test_backend_tensorflow_forces_tensorflow(optimized_base):
    with running_server(optimized_base, backend="tensorflow") as (server, stubs):
        assert _status(stubs)[1].status.error_message == "all signatures: tensorflow (--backend=tensorflow)"
        assert set(_backend_metrics(server).values()) == {"tensorflow"}


def test_plain_versions_report_tf_servings_empty_status_message(exported, tmp_path):
    base = tmp_path / "digits"
    helpers.push_version(exported[1], str(base), 1)
    with running_server(base) as (server, stubs):
        assert _status(stubs)[1].status.error_message == ""
        assert set(_backend_metrics(server).values()) == {"tensorflow"}


def test_backend_onnxruntime_requires_the_artifact_and_latest_falls_back(optimized_export, exported, tmp_path):
    """Version 2 has no artifact: under --backend=onnxruntime it fails to load, version 1 serves."""
    base = tmp_path / "digits"
    helpers.push_version(optimized_export, str(base), 1)
    helpers.push_version(exported[2], str(base), 2)
    with running_server(base, backend="onnxruntime") as (server, stubs):
        statuses = _status(stubs)
        assert statuses[2].state == END and statuses[2].status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert "--backend=onnxruntime needs a valid optimized artifact" in statuses[2].status.error_message
        assert "manifest.json is missing" in statuses[2].status.error_message
        assert statuses[1].state == AVAILABLE and "serving_images: onnxruntime" in statuses[1].status.error_message
        assert _predict(stubs, helpers.images(1)).model_spec.version.value == 1


def test_batching_and_warmup_run_through_onnxruntime(optimized_export, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(optimized_export, source)
    warm = predict_pb2.PredictRequest()
    warm.model_spec.signature_name = "serving_images"
    warm.inputs["images"].CopyFrom(to_tensor_proto(helpers.images(2)))
    write_warmup_file(str(source), [warm] * 3)
    base = tmp_path / "digits"
    helpers.push_version(str(source), str(base), 1)
    with running_server(base) as (server, stubs):
        signature = server.manager.loaded_versions()[0].signature("serving_images")
        assert signature.backend.name == "onnxruntime" and signature.batcher is not None
        assert signature.batcher.batches_run == 3 and signature.batcher.rows_run == 6, "warmup ran through the batcher"
        images = helpers.images(32, seed=9)
        reference = make_ndarray(_predict(stubs, images).outputs["probabilities"])
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: _predict(stubs, images[i:i + 1]), range(32)))
        got = np.concatenate([make_ndarray(a.outputs["probabilities"]) for a in answers])
        np.testing.assert_allclose(got, reference, atol=1e-5)  # each caller gets its own row back
        assert signature.batcher.rows_run == 6 + 32 + 32
        assert signature.batcher.batches_run < 3 + 1 + 32, "concurrent requests shared batches"


def test_a_new_version_switches_backend_without_an_outage(exported, optimized_export, tmp_path):
    base = tmp_path / "digits"
    helpers.push_version(exported[2], str(base), 1)
    with running_server(base) as (server, stubs):
        assert _backend_metrics(server)["serving_images"] == "tensorflow"
        helpers.push_version(optimized_export, str(base), 2)
        for _ in range(200):  # requests keep succeeding through the transition
            _predict(stubs, helpers.images(1))
            if _predict(stubs, helpers.images(1)).model_spec.version.value == 2:
                break
        helpers.wait_until(lambda: sorted(server.manager.available_versions()["digits"]) == [2], what="version 1 retired")
        assert _backend_metrics(server)["serving_images"] == "onnxruntime"


def test_without_onnxruntime_the_artifact_falls_back_with_the_reason(optimized_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    signature_defs = read_signature_defs(str(optimized_export))
    choice = choose_backends(str(optimized_export), list(signature_defs), signature_defs, BackendOptions())
    assert choice.backends == {} and "onnxruntime is not installed" in choice.status


def test_execution_providers_are_picked_best_first(monkeypatch):
    """No GPU here: ONNX Runtime's provider list is replaced to check the order asked for."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"])
    assert providers_for_host() == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for_host() == ["CPUExecutionProvider"]


def test_backend_flags_are_validated():
    from serving.server import ServerOptions

    with pytest.raises(ValueError, match="--backend='gpu'"):
        ServerOptions(model_base_path="/m", backend="gpu")
    with pytest.raises(ValueError, match="onnxruntime_intra_op_threads"):
        ServerOptions(model_base_path="/m", onnxruntime_intra_op_threads=-1)
