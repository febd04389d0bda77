"""TF-TRT: convert the serving SavedModel with TrtGraphConverterV2, keeping all three signatures.

Needs TensorFlow built with TensorRT (2.17 or older; 2.18+ are built without it) and an
NVIDIA GPU. This module does not import TFX, so it also runs on its own inside a TF 2.17
GPU container (see docs/tensorrt.md):

    python -m components.optimize.trt --saved-model model/Format-Serving \
        --examples examples/Split-eval --output trt/Format-Serving --precision FP16

TrtGraphConverterV2 converts one signature per converter and `save()` writes only that
one signature (and no assets). So each signature is converted by its own converter, and
the three converted SavedModels are merged into one with `merge_signatures`; the label
asset and `assets.extra` (warmup requests) are copied from the original.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from components.optimize.eval_data import EvalInputs, read_eval_inputs, serving_image_shape
from components.optimize.files import copy_tree
from components.optimize.parity import ALL_SIGNATURES, check_saved_model_parity, worst_of
from serving.contract import CLASSIFY_SIGNATURE, LABEL_ASSET, mark_classify_method
from serving.layout import ASSETS_EXTRA



def merge_signatures(parts: Mapping[str, str], output_dir: str, original_dir: str) -> str:
    """Saves one SavedModel whose signature `key` comes from the SavedModel at `parts[key]`.

    The label asset and `assets.extra/` are copied from `original_dir`; the classification
    signature gets TF Serving's classify method name again.

        merge_signatures({"serving_default": "a", "serving_images": "b", "classification": "c"}, "out", "orig")
    """
    root = tf.Module()
    # Tracking the loaded objects keeps their resources (TF-TRT engines, tables) in the new SavedModel.
    root.parts = [tf.saved_model.load(path) for path in parts.values()]
    signatures = {key: part.signatures[key] for key, part in zip(parts, root.parts)}
    tf.saved_model.save(root, output_dir, signatures=signatures)
    if CLASSIFY_SIGNATURE in signatures:
        mark_classify_method(output_dir)
    tf.io.gfile.makedirs(os.path.join(output_dir, "assets"))
    tf.io.gfile.copy(os.path.join(original_dir, "assets", LABEL_ASSET), os.path.join(output_dir, "assets", LABEL_ASSET), overwrite=True)
    if tf.io.gfile.isdir(os.path.join(original_dir, ASSETS_EXTRA)):
        copy_tree(os.path.join(original_dir, ASSETS_EXTRA), os.path.join(output_dir, ASSETS_EXTRA))
    return output_dir


def _signature_input_dtypes(saved_model_dir: str, signatures: Sequence[str]) -> dict[str, tf.DType]:
    loaded = tf.saved_model.load(saved_model_dir)
    return {key: next(iter(loaded.signatures[key].structured_input_signature[1].values())).dtype for key in signatures}


def _batches(inputs: np.ndarray, batch_size: int, count: int) -> Iterator[tuple[tf.Tensor]]:
    """`count` inputs in batches of `batch_size` (eval inputs repeated if there are fewer)."""
    pool = np.resize(inputs, (max(count, batch_size), *inputs.shape[1:]))
    for start in range(0, count - batch_size + 1, batch_size):
        yield (tf.constant(pool[start : start + batch_size]),)


def convert_with_tf_trt(saved_model_dir: str, output_dir: str, *, precision: str, batch_sizes: Sequence[int], eval_inputs: EvalInputs, calibration_examples: int, signatures: Sequence[str] = ALL_SIGNATURES) -> str:
    """Converts every signature with TF-TRT, pre-builds engines for `batch_sizes`, merges them."""
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    dtypes = _signature_input_dtypes(saved_model_dir, signatures)
    with tempfile.TemporaryDirectory() as tmp:
        parts = {}
        for key in signatures:
            inputs = eval_inputs.serialized if dtypes[key] == tf.string else eval_inputs.images
            converter = trt.TrtGraphConverterV2(
                input_saved_model_dir=saved_model_dir,
                input_saved_model_signature_key=key,
                precision_mode=precision,
                use_calibration=precision == "INT8",
                use_dynamic_shape=True,
                dynamic_shape_profile_strategy="Optimal",  # one optimization profile per built shape
            )
            calibration_batch = min(max(batch_sizes), calibration_examples)
            converter.convert(calibration_input_fn=(lambda: _batches(inputs, calibration_batch, calibration_examples)) if precision == "INT8" else None)
            converter.build(input_fn=lambda: (batch for size in batch_sizes for batch in _batches(inputs, size, size)))
            parts[key] = os.path.join(tmp, key)
            converter.save(parts[key])
        return merge_signatures(parts, output_dir, saved_model_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a serving SavedModel with TF-TRT and check parity against it.")
    parser.add_argument("--saved-model", required=True, help="the original SavedModel (e.g. <model uri>/Format-Serving)")
    parser.add_argument("--examples", required=True, help="a Split-eval directory of gzipped tf.Example TFRecords")
    parser.add_argument("--output", required=True, help="where to write the converted SavedModel")
    parser.add_argument("--precision", default="FP16", choices=["FP32", "FP16", "INT8"])
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes to pre-build engines for")
    parser.add_argument("--calibration-examples", type=int, default=512)
    parser.add_argument("--parity-examples", type=int, default=256)
    parser.add_argument("--min-top1-agreement", type=float, default=0.995)
    parser.add_argument("--max-prob-diff", type=float, default=0.02)
    args = parser.parse_args(argv)

    from components.optimize.environment import detect_accelerators

    accelerators = detect_accelerators()
    if not accelerators.tf_trt_ready:
        print(f"[tf-trt] cannot convert here: {accelerators.describe()}", file=sys.stderr)
        return 2
    eval_inputs = read_eval_inputs(args.examples, max(args.parity_examples, args.calibration_examples), serving_image_shape(args.saved_model))
    batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    convert_with_tf_trt(args.saved_model, args.output, precision=args.precision, batch_sizes=batch_sizes, eval_inputs=eval_inputs, calibration_examples=args.calibration_examples)
    parity = worst_of(check_saved_model_parity(args.saved_model, args.output, eval_inputs[: args.parity_examples], min_top1_agreement=args.min_top1_agreement, max_prob_diff=args.max_prob_diff))
    print(f"[tf-trt] {parity.describe()}")
    return 0 if parity.passed else 1


if __name__ == "__main__":
    sys.exit(main())
