"""The server's direct (flat) signature call gives exactly what the structured call gives."""
import numpy as np
import pytest
import tensorflow as tf

from serving.server.servable import LoadedVersion
from serving.server.signature import Signature


@pytest.fixture(scope="module")
def version(exported):
    return LoadedVersion.load("digits", 1, exported[1])


def _structured(signature: Signature, arrays: dict) -> dict:
    flat, signature._flat = signature._flat, None
    try:
        return signature.call(arrays)
    finally:
        signature._flat = flat


@pytest.mark.parametrize("rows", [1, 3])
def test_every_exported_signature_uses_the_flat_call_with_identical_outputs(version, rows):
    rng = np.random.default_rng(rows)
    images = rng.integers(0, 256, (rows, 8, 8, 1), dtype=np.uint8)
    examples = np.array([tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
    })).SerializeToString() for image in images], dtype=object)
    inputs = {"serving_images": {"images": images}, "serving_default": {"examples": examples},
              "classification": {"inputs": examples}}
    for name, signature in version.signatures.items():
        assert signature._flat is not None, name
        fast, slow = signature.call(inputs[name]), _structured(signature, inputs[name])
        assert sorted(fast) == sorted(slow) == sorted(signature.outputs)
        for key in fast:
            assert fast[key].dtype == slow[key].dtype and fast[key].shape == slow[key].shape
            np.testing.assert_array_equal(fast[key], slow[key])


def test_functions_the_flat_call_cannot_describe_keep_the_structured_call():
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def nested(x):
        return {"a": {"b": x}}  # nested output: not a flat dict of tensors

    from tensorflow.core.protobuf import meta_graph_pb2

    signature_def = meta_graph_pb2.SignatureDef()
    info = signature_def.inputs["x"]
    info.dtype = tf.float32.as_datatype_enum
    info.tensor_shape.dim.add(size=-1)
    info.tensor_shape.dim.add(size=2)
    function = nested.get_concrete_function()
    assert Signature("nested", signature_def, function)._flat is None

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def other_shape(x):
        return {"y": x}

    # the SignatureDef says [?, 2], the graph [?, 3]: the SignatureDef check would not protect the graph
    assert Signature("mismatch", signature_def, other_shape.get_concrete_function())._flat is None
