"""The parts of the TF-TRT path that run without a GPU: merge_signatures on real SavedModels, and the CLI's refusal."""
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from components.optimize.trt import merge_signatures
from serving.contract import read_label_names

from tests.components.optimize.conftest import LABELS

SIGNATURES = ("serving_default", "serving_images", "classification")


def test_merge_keeps_three_signatures_labels_classify_method_and_warmup(tmp_path, saved_model_dir, perturbed_saved_model_dir):
    original = tmp_path / "original"
    shutil.copytree(saved_model_dir, original)
    (original / "assets.extra").mkdir()
    (original / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"warmup")
    # serving_images from the perturbed model proves each signature comes from its own part.
    parts = {"serving_default": str(original), "serving_images": perturbed_saved_model_dir, "classification": str(original)}
    merged = merge_signatures(parts, str(tmp_path / "merged"), str(original))

    meta = saved_model_pb2.SavedModel()
    meta.ParseFromString((tmp_path / "merged" / "saved_model.pb").read_bytes())
    defs = meta.meta_graphs[0].signature_def
    assert set(SIGNATURES) <= set(defs)
    assert defs["classification"].method_name == "tensorflow/serving/classify"
    assert read_label_names(merged) == LABELS
    assert (tmp_path / "merged" / "assets.extra" / "tf_serving_warmup_requests").read_bytes() == b"warmup"

    images = tf.constant(np.random.default_rng(0).integers(0, 255, (4, 8, 8, 1), dtype=np.uint8))
    merged_fn = tf.saved_model.load(merged).signatures["serving_images"]
    perturbed_fn = tf.saved_model.load(perturbed_saved_model_dir).signatures["serving_images"]
    np.testing.assert_allclose(merged_fn(images=images)["probabilities"], perturbed_fn(images=images)["probabilities"], atol=1e-6)


def test_standalone_cli_refuses_without_tf_trt_and_says_why(tmp_path, saved_model_dir, eval_split_dir, accelerators, capsys):
    from components.optimize.trt import main

    if accelerators.tf_trt_ready:
        pytest.skip("TF-TRT can run here; the refusal path does not apply")
    code = main(["--saved-model", saved_model_dir, "--examples", eval_split_dir, "--output", str(tmp_path / "trt")])
    assert code == 2
    assert accelerators.describe() in capsys.readouterr().err
    assert not (tmp_path / "trt").exists()
