"""The serving contract: the signatures, inputs, outputs and label asset every pushed model has.

The Trainer writes it (components/train/export.py), the optimizer keeps it, the validators
probe it, the server and the client call it. This module is its one home:

| signature          | input                                    | outputs                                        |
|--------------------|------------------------------------------|------------------------------------------------|
| `serving_default`  | `examples`: serialized tf.Example [N]    | `probabilities` f32 [N,K], `classes` str [N,K] |
| `serving_images`   | `images`: uint8 [N,H,W,C] (image models) | `probabilities` f32 [N,K], `classes` str [N,K] |
| `serving_text`     | `text`: UTF-8 string [N] (text models)   | `probabilities` f32 [N,K], `classes` str [N,K] |
| `classification`   | `inputs`: serialized tf.Example [N]      | `scores` f32 [N,K], `classes` str [N,K]        |

`classification` carries TF Serving's classify method name (`mark_classify_method`), so the
Classify RPC works on the real `tensorflow_model_server` too. `classes[i]` are the label
names in class-id order; they are also an asset, `assets/label_names.txt`, one per line.

    from serving import contract
    contract.RAW_SIGNATURES["image"]                  # "serving_images"
    contract.read_label_names("runs/serving/digits/3")  # ["0", "1", ..., "9"]
"""
from __future__ import annotations

import os

from serving.layout import SAVED_MODEL_FILE

EXAMPLES_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "serving_images"
TEXT_SIGNATURE = "serving_text"
CLASSIFY_SIGNATURE = "classification"
RAW_SIGNATURES = {"image": IMAGES_SIGNATURE, "text": TEXT_SIGNATURE}  # raw-input signature per modality

# Input names of the signatures above.
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
TEXT_INPUT = "text"
CLASSIFY_INPUT = "inputs"
RAW_INPUTS = {"image": IMAGES_INPUT, "text": TEXT_INPUT}

# Output names.
PROBABILITIES_OUTPUT = "probabilities"
CLASSES_OUTPUT = "classes"
SCORES_OUTPUT = "scores"  # the classification signature's probabilities

CLASSIFY_METHOD = "tensorflow/serving/classify"  # TF Serving's method_name for the Classify API
REGRESS_METHOD = "tensorflow/serving/regress"
LABEL_ASSET = "label_names.txt"  # under <SavedModel>/assets/


def label_asset_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, "assets", LABEL_ASSET)


def read_label_names(saved_model_dir: str) -> list[str]:
    """The class names of an exported model, in class-id order (OSError if it has none)."""
    with open(label_asset_path(saved_model_dir)) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def mark_classify_method(export_dir: str) -> None:
    """TF2 saves every signature as 'predict'; TF Serving's Classify needs 'classify'."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, SAVED_MODEL_FILE)
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if CLASSIFY_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD
    with open(path, "wb") as f:
        f.write(saved_model.SerializeToString())
