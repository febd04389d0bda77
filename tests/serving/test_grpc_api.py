"""The gRPC API with the real tensorflow_serving stubs against a real SavedModel."""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.contract import read_label_names
from serving.client import ServingClient
from serving.server.tensors import to_tensor_proto
from tests.serving import helpers
from tests.serving.conftest import BACKENDS_UNDER_TEST


@pytest.fixture(scope="module", params=BACKENDS_UNDER_TEST)
def serving_backend(request):
    """Every test here runs on the shared server once per backend (onnxruntime: version 1 carries its artifact)."""
    return request.param


def _expected(exported_dir: str, images: np.ndarray) -> np.ndarray:
    """Probabilities from calling the SavedModel directly (the ground truth)."""
    loaded = tf.saved_model.load(exported_dir)
    return loaded.signatures["serving_images"](images=tf.constant(images))["probabilities"].numpy()


def test_predict_raw_images_matches_the_saved_model(stubs, exported):
    request = helpers.image_request(batch=3)
    response = stubs.predict.Predict(request, timeout=10)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    classes = tf.make_ndarray(response.outputs["classes"])
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities, _expected(exported[1], helpers.images(3)), rtol=1e-5, atol=1e-6)
    assert [c.decode() for c in classes[0]] == read_label_names(exported[1]) == helpers.LABELS
    assert response.model_spec.name == "digits"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_images"
    # TF Serving's default encoding: typed value fields, so `.float_val` readers work too.
    assert len(response.outputs["probabilities"].float_val) == 9


def test_predict_serialized_examples_uses_the_default_signature(stubs, exported):
    images = helpers.images(2, seed=5)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"  # no signature_name: serving_default
    request.inputs["examples"].CopyFrom(to_tensor_proto(np.array([helpers.png_example(i) for i in images], dtype=object)))
    response = stubs.predict.Predict(request, timeout=10)
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), _expected(exported[1], images), rtol=1e-5, atol=1e-6)


def test_output_filter_returns_only_named_outputs(stubs):
    request = helpers.image_request()
    request.output_filter.append("classes")
    response = stubs.predict.Predict(request, timeout=10)
    assert list(response.outputs) == ["classes"]
    request.output_filter[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.Predict(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in error.value.details()


def test_classify_returns_labels_and_scores(stubs):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "classification"
    for image in helpers.images(2):
        request.input.example_list.examples.append(tf.train.Example.FromString(helpers.png_example(image)))
    response = stubs.predict.Classify(request, timeout=10)
    rows = response.result.classifications
    assert len(rows) == 2
    assert [c.label for c in rows[0].classes] == helpers.LABELS
    assert sum(c.score for c in rows[0].classes) == pytest.approx(1.0, abs=1e-5)


def test_classify_with_context_merges_features(stubs):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "classification"
    listed = request.input.example_list_with_context
    listed.context.CopyFrom(tf.train.Example.FromString(helpers.png_example(helpers.images(1)[0])))
    listed.examples.add()  # the image comes from the context
    response = stubs.predict.Classify(request, timeout=10)
    assert len(response.result.classifications) == 1


def test_classify_on_a_predict_signature_is_invalid_argument(stubs):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "digits"  # serving_default is a predict signature
    request.input.example_list.examples.append(tf.train.Example.FromString(helpers.png_example(helpers.images(1)[0])))
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.Classify(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow/serving/classify" in error.value.details()


def test_regress_without_a_regression_signature_is_invalid_argument(stubs):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "classification"
    request.input.example_list.examples.append(tf.train.Example.FromString(helpers.png_example(helpers.images(1)[0])))
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.Regress(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "regression signature" in error.value.details()


def test_multi_inference_runs_the_classify_task(stubs):
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name="tensorflow/serving/classify")
    task.model_spec.name = "digits"
    task.model_spec.signature_name = "classification"
    request.input.example_list.examples.append(tf.train.Example.FromString(helpers.png_example(helpers.images(1)[0])))
    response = stubs.predict.MultiInference(request, timeout=10)
    assert len(response.results) == 1
    assert response.results[0].model_spec.version.value == 1
    assert len(response.results[0].classification_result.classifications[0].classes) == 3
    request.tasks[0].method_name = "tensorflow/serving/predict"
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.MultiInference(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_get_model_metadata_returns_the_signature_defs(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits"
    response = stubs.predict.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    images = signatures.signature_def["serving_images"].inputs["images"]
    assert [d.size for d in images.tensor_shape.dim] == [-1, 8, 8, 1]
    assert signatures.signature_def["classification"].method_name == "tensorflow/serving/classify"
    request.metadata_field[:] = ["something_else"]
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.GetModelMetadata(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status_reports_available(stubs):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    response = stubs.models.GetModelStatus(request, timeout=10)
    (status,) = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    request.model_spec.name = "unknown-model"
    with pytest.raises(grpc.RpcError) as error:
        stubs.models.GetModelStatus(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_library_round_trip(server, exported):
    with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout=10) as client:
        assert client.image_shape("digits") == helpers.IMAGE_SHAPE
        prediction = client.predict_images("digits", helpers.images(2))
        assert prediction.version == 1 and prediction.probabilities.shape == (2, 3)
        assert prediction.classes[0] == helpers.LABELS
        top = prediction.top_k(2)
        assert len(top[0]) == 2 and top[0][0][1] >= top[0][1][1]
        by_examples = client.predict_examples("digits", [helpers.png_example(i) for i in helpers.images(2)])
        np.testing.assert_allclose(by_examples.probabilities, prediction.probabilities, rtol=1e-5, atol=1e-6)
        classified = client.classify("digits", [helpers.png_example(i) for i in helpers.images(2)])
        assert [label for label, _ in classified[0]] == helpers.LABELS
        assert client.status("digits")[0].state == "AVAILABLE"
        assert "serving_images" in client.metadata("digits", version=1)
        with pytest.raises(ValueError, match="uint8"):
            client.predict_images("digits", helpers.images(1).astype(np.float32))
