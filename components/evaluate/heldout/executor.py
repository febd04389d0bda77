"""HeldOutEvaluator's executor: run the exported model over the test split's tf.Examples.

    result = evaluate_saved_model("trainer/model/7/Format-Serving", split_files("examples/3", "test"))
    result["accuracy"], result["confusion_matrix"], result["per_class"]
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.evaluate.keys import HELDOUT_REPORT_FILE, SPLIT_KEY, TEST_ACCURACY_KEY
from components.evaluate.metrics import per_class_from_confusion
from components.examples_layout import split_files
from serving.contract import EXAMPLES_SIGNATURE, read_label_names


def evaluate_saved_model(model_dir: str, files: list[str], batch_size: int = 256) -> dict:
    """Run the serving_default signature over tf.Examples; return accuracy & confusion matrix."""
    fn = tf.saved_model.load(model_dir).signatures[EXAMPLES_SIGNATURE]
    label_names = read_label_names(model_dir)
    k = len(label_names)
    cm = np.zeros((k, k), dtype=np.int64)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)
    for batch in ds:
        labels = tf.io.parse_example(batch, {"label": tf.io.FixedLenFeature([], tf.int64)})["label"].numpy()
        preds = np.argmax(fn(examples=batch)["probabilities"].numpy(), axis=1)
        np.add.at(cm, (labels, preds), 1)
    return {
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "num_examples": int(cm.sum()),
        "label_names": label_names,
        "confusion_matrix": cm.tolist(),
        # Undefined precision/recall (never predicted / no examples) count as 0.0: a gate fails on them.
        "per_class": per_class_from_confusion(cm.tolist(), label_names, zero_division=0.0),
    }


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        report = artifact_utils.get_single_instance(output_dict["report"])
        split = exec_properties["split"]
        result = evaluate_saved_model(path_utils.serving_model_path(model.uri), split_files(examples.uri, split))
        result["split"] = split
        os.makedirs(report.uri, exist_ok=True)
        with open(os.path.join(report.uri, HELDOUT_REPORT_FILE), "w") as f:
            json.dump(result, f, indent=2)
        report.set_float_custom_property(TEST_ACCURACY_KEY, result["accuracy"])
        report.set_string_custom_property(SPLIT_KEY, split)
