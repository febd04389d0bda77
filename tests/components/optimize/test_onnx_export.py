"""ONNX export of serving_images and an ONNX Runtime parity check, on CPU."""
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from components.optimize.eval_data import read_eval_inputs
from components.optimize.parity import check_parity, saved_model_predictor

from tests.components.optimize.conftest import IMAGE_SHAPE

if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    pytest.skip("tf2onnx and onnxruntime are not installed (pip install tf2onnx==1.17.0 onnxruntime==1.31.0)", allow_module_level=True)

from components.optimize.onnx_export import export_onnx, images_subgraph, images_subgraph_function, onnxruntime_predictor  # noqa: E402


@pytest.fixture(scope="module")
def onnx_bytes(saved_model_dir):
    return export_onnx(saved_model_dir)


@pytest.fixture(scope="module")
def images(eval_split_dir):
    return read_eval_inputs(eval_split_dir, limit=1000, image_shape=IMAGE_SHAPE).images


def test_onnx_model_has_the_images_interface(onnx_bytes):
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type) == ("images", onnx.TensorProto.UINT8)
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == list(IMAGE_SHAPE)
    assert (out.name, out.type.tensor_type.elem_type) == ("probabilities", onnx.TensorProto.FLOAT)
    assert not {n.op_type for n in model.graph.node} & {"EncodePng", "DecodePng"}, "the PNG round trip must be cut off"


def test_onnxruntime_matches_the_saved_model(saved_model_dir, onnx_bytes, images):
    reference, _ = saved_model_predictor(saved_model_dir, "serving_images")
    result = check_parity(reference, onnxruntime_predictor(onnx_bytes), images, min_top1_agreement=1.0, max_prob_diff=1e-5)
    assert result.passed, result.describe()


def test_cut_graph_in_tensorflow_matches_the_signature(saved_model_dir, images):
    reference, _ = saved_model_predictor(saved_model_dir, "serving_images")
    cut = images_subgraph_function(images_subgraph(saved_model_dir))
    np.testing.assert_allclose(cut(tf.constant(images)).numpy(), reference(images), atol=1e-6)
