"""ModelOptimizer executor: optimize if this machine can, gate it, never block a push.

Outcomes, recorded in the output Model's custom property `optimizer` and in
`<optimized_model uri>/optimizer.json`:

| status          | Format-Serving holds                                    | when |
|-----------------|---------------------------------------------------------|------|
| `optimized`     | the original SavedModel + `assets.extra/optimized/` (ONNX Runtime / TensorRT) | a candidate passed parity, accuracy and speed gates |
| `optimized`     | the TF-TRT SavedModel (engine `tf-trt`, TF <= 2.17 + GPU) | TF-TRT converted it and parity passed |
| `kept_original` | the original SavedModel                                 | candidates were built but none passed every gate (numbers per candidate), or the signature's ops do not convert |
| `skipped`       | the original SavedModel                                 | no usable engine, engine `none`, not blessed, no eval data (`reason` says which) |
| `parity_failed` | the original SavedModel                                 | TF-TRT disagreed with the original too much |
| `error`         | the original SavedModel                                 | the optimizer raised; `reason` has the error |

The optimized artifact's layout and manifest belong to serving/optimized.py.

    result = run_optimizer("trainer/model/7/Format-Serving", "examples/3/Split-eval",
                           "optimizer/optimized_model/9", validate_optimize_config({"engine": "auto"}))
    result["status"], result["summary"]   # "optimized", {"engine": "onnxruntime", "precision": "fp32", ...}
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from absl import logging
import tensorflow as tf

from pipeline.tfx_compat import tfx  # noqa: F401  (TFX import order; see pipeline/tfx_compat.py)
from tfx.components.util.model_utils import is_model_blessed
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.optimize import spec
from components.optimize.candidates import build_candidates, choose, gate_candidates, public
from components.optimize.config import OptimizeConfig
from components.optimize.environment import Accelerators, detect_accelerators
from components.optimize.eval_data import EvalInputs, read_eval_inputs, serving_image_shape
from components.optimize.files import copy_tree, write_bytes
from components.optimize.manifest import build_manifest
from components.optimize.summary import summary_of
from components.optimize.onnx_export import EngineUnsupportedError, OnnxExportError, export_onnx
from components.optimize.parity import ParityResult, check_saved_model_parity, saved_model_predictor, worst_of
from components.optimize.trt import convert_with_tf_trt
from components.train.export import IMAGES_SIGNATURE, TEXT_SIGNATURE, read_label_names
from serving import optimized
from serving.server.servable import read_signature_defs

SERVING_DIR = "Format-Serving"
RESULT_FILE = "optimizer.json"
EVAL_SPLIT = "eval"


class _Run:
    """One optimizer run's inputs, shared by the engine functions below."""

    def __init__(self, model_dir: str, output_uri: str, config: OptimizeConfig, eval_inputs: EvalInputs):
        self.model_dir = model_dir
        self.output_uri = output_uri
        self.serving_out = os.path.join(output_uri, SERVING_DIR)
        self.config = config
        self.eval_inputs = eval_inputs
        self.parity_inputs = eval_inputs[: config.parity_examples]

    def parity_bounds(self, precision: str) -> dict:
        return {"min_top1_agreement": self.config.parity_min_top1_agreement, "max_prob_diff": self.config.max_prob_diff_for(precision)}


def _outcome(parity: ParityResult, passed_status: str, **fields) -> dict:
    if parity.passed:
        return {"status": passed_status, "parity": parity.to_dict(), **fields}
    fields["saved_model"] = "original"
    fields.pop("files", None)
    return {"status": "parity_failed", "parity": parity.to_dict(), "reason": f"{parity.describe()}; the original model is passed through", **fields}


def _run_tf_trt(run: _Run) -> dict:
    precision = "FP16" if run.config.precision == "AUTO" else run.config.precision  # TF-TRT builds one precision
    with tempfile.TemporaryDirectory() as tmp:
        converted = convert_with_tf_trt(
            run.model_dir,
            os.path.join(tmp, "saved_model"),
            precision=precision,
            batch_sizes=run.config.batch_sizes,
            eval_inputs=run.eval_inputs,
            calibration_examples=run.config.calibration_examples,
        )
        per_signature = check_saved_model_parity(run.model_dir, converted, run.parity_inputs, **run.parity_bounds(precision))
        parity = worst_of(per_signature)
        if parity.passed:
            tf.io.gfile.rmtree(run.serving_out)
            copy_tree(converted, run.serving_out)
    return _outcome(
        parity, "optimized", engine="tf-trt", precision=precision, saved_model="optimized",
        parity_by_signature={k: v.to_dict() for k, v in per_signature.items()},
    )


def _run_onnx_engines(run: _Run, engine: str, accelerators: Accelerators, signature: str) -> dict:
    """ONNX Runtime (engine `onnx`) or native TensorRT (`tensorrt`) candidates, gated; the best is attached."""
    import onnxruntime

    try:
        onnx_fp32 = export_onnx(run.model_dir, signature=signature)
    except OnnxExportError as e:
        if signature == IMAGES_SIGNATURE:
            raise
        return {"status": "kept_original", "engine": engine, "reason": str(e), "signatures": {signature: f"tensorflow: {e}"},
                "unsupported_ops": e.unsupported_ops}
    candidates = build_candidates(engine, run.config, onnx_fp32, run.eval_inputs, onnxruntime.get_available_providers())
    reference, _ = saved_model_predictor(run.model_dir, signature)
    results = gate_candidates(candidates, reference, run.eval_inputs, run.config)
    best = choose(results)
    tried = [public(r) for r in results]
    if best is None:
        reasons = "; ".join(r["reason"] for r in results)
        gated = [r for r in tried if "gates" in r]
        fastest = max(gated, key=lambda r: r["gates"]["speed"]["speedup"]["1"] * r["gates"]["speed"]["speedup"][str(run.config.timing_batch)], default=None)
        return {"status": "kept_original", "engine": engine, "candidates": tried, "summary": summary_of(fastest) if fastest else None,
                "reason": f"no optimized candidate passed every gate ({reasons}); the original model is served by TensorFlow"}
    manifest = build_manifest(run.model_dir, signature, best, tried, accelerators)
    labels = read_label_names(run.model_dir)
    written = optimized.write_optimized(run.serving_out, manifest, best["candidate"].files, labels)
    return {"status": "optimized", "engine": written["engine"], "precision": written["precision"], "saved_model": "original",
            "artifact": os.path.join(optimized.OPTIMIZED_DIR, optimized.MANIFEST_FILE), "gates": written["gates"],
            "candidates": tried, "signatures": written["signatures"], "summary": summary_of(written)}


def choose_engine(requested: str, accelerators: Accelerators) -> tuple[str | None, str]:
    """(engine to run, or None with the reason why none runs).

    `auto`: TF-TRT (TensorFlow <= 2.17 with TensorRT and a GPU), else native TensorRT (GPU +
    tensorrt), else ONNX Runtime (CUDA EP on a GPU with onnxruntime-gpu, CPU EP elsewhere).
    """
    if requested == "none":
        return None, "optimize.engine is 'none'"
    if requested == "auto":
        if accelerators.tf_trt_ready:
            return "tf-trt", ""
        if accelerators.tensorrt_ready:
            return "tensorrt", ""
        if accelerators.onnx_ready:
            return "onnx", ""
        return None, f"no optimizing engine on this machine: {accelerators.describe()}"
    ready = {"tf-trt": accelerators.tf_trt_ready, "tensorrt": accelerators.tensorrt_ready, "onnx": accelerators.onnx_ready}[requested]
    return (requested, "") if ready else (None, f"engine {requested!r} was requested but cannot run here: {accelerators.describe()}")


def _engine_result(model_dir: str, eval_split_dir: str | None, output_uri: str, config: OptimizeConfig, blessed: bool, accelerators: Accelerators) -> dict:
    if not blessed:
        return {"status": "skipped", "reason": "the model is not blessed (model_blessing has blessed != 1), so it will not be pushed; nothing to optimize"}
    engine, why_not = choose_engine(config.engine, accelerators)
    if engine is None:
        return {"status": "skipped", "reason": why_not}
    if eval_split_dir is None:
        return {"status": "skipped", "engine": engine, "reason": f"the examples have no '{EVAL_SPLIT}' split, so parity cannot be checked; give ModelOptimizer examples with Split-{EVAL_SPLIT}"}
    try:
        signatures = read_signature_defs(model_dir)
        signature = IMAGES_SIGNATURE if IMAGES_SIGNATURE in signatures else TEXT_SIGNATURE if TEXT_SIGNATURE in signatures else None
        if signature is None:
            return {"status": "skipped", "engine": engine, "reason": f"the model has neither {IMAGES_SIGNATURE} nor {TEXT_SIGNATURE}; the optimizer starts from a raw-input signature"}
        if engine == "tf-trt" and signature != IMAGES_SIGNATURE:
            return {"status": "skipped", "engine": engine, "reason": f"the model has no {IMAGES_SIGNATURE} signature (a text model); TF-TRT here optimizes image models only"}
        if engine == "tensorrt" and signature != IMAGES_SIGNATURE:
            engine = "onnx"  # native TensorRT plans here take images; text goes through ONNX Runtime
        image_shape = serving_image_shape(model_dir) if signature == IMAGES_SIGNATURE else None
        limit = max(config.parity_examples, config.calibration_examples, config.accuracy_examples)
        eval_inputs = read_eval_inputs(eval_split_dir, limit, image_shape)
        if len(eval_inputs) == 0:
            raise FileNotFoundError(f"{eval_split_dir} holds no examples")
        run = _Run(model_dir, output_uri, config, eval_inputs)
        if engine == "tf-trt":
            return _run_tf_trt(run)
        return _run_onnx_engines(run, engine, accelerators, signature)
    except EngineUnsupportedError as e:
        return {"status": "skipped", "engine": engine, "reason": str(e)}
    except FileNotFoundError as e:
        return {"status": "skipped", "engine": engine, "reason": f"no eval examples for parity ({e})"}
    except Exception as e:  # an optimizer bug must not stop the original model from being pushed
        logging.exception("[ModelOptimizer] engine %s failed", engine)
        return {"status": "error", "engine": engine, "reason": f"{type(e).__name__}: {e}"[:2000] + "; the original model is passed through"}


def run_optimizer(model_dir: str, eval_split_dir: str | None, output_uri: str, config: OptimizeConfig, *, blessed: bool = True, accelerators: Accelerators | None = None) -> dict[str, Any]:
    """Optimizes (or passes through) the SavedModel at `model_dir` into `<output_uri>/Format-Serving`.

    Format-Serving starts as a copy of the original; an artifact that passed its gates is
    added under `assets.extra/optimized/` (TF-TRT replaces the SavedModel instead).
    Returns the result dict that is also written to `<output_uri>/optimizer.json`.
    """
    accelerators = accelerators or detect_accelerators()
    serving_out = os.path.join(output_uri, SERVING_DIR)
    if tf.io.gfile.exists(serving_out):
        tf.io.gfile.rmtree(serving_out)  # nothing half-written may be pushed
    copy_tree(model_dir, serving_out)
    result = _engine_result(model_dir, eval_split_dir, output_uri, config, blessed, accelerators)
    result.setdefault("saved_model", "original")
    result.update(engine_requested=config.engine, precision_requested=config.precision, detected=accelerators.to_dict())
    if result["status"] != "optimized" or result.get("artifact") is None:
        optimized.remove_optimized(serving_out)  # no artifact that did not pass its gates may be pushed
    write_bytes(os.path.join(output_uri, RESULT_FILE), json.dumps(result, indent=2, sort_keys=True))
    if result["status"] == "optimized":
        logging.info("[ModelOptimizer] optimized with %s (%s): %s", result["engine"], result["precision"], json.dumps(result.get("summary") or result.get("parity")))
    else:
        logging.warning("[ModelOptimizer] %s: %s. The original model is passed through to %s.", result["status"], result["reason"], serving_out)
    return result


class Executor(base_executor.BaseExecutor):
    """TFX executor of ModelOptimizer (see the module docstring for what it records)."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        config = OptimizeConfig.from_json(exec_properties[spec.OPTIMIZE_CONFIG_KEY])
        model = artifact_utils.get_single_instance(input_dict[spec.MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        blessed = all(is_model_blessed(b) for b in input_dict.get(spec.MODEL_BLESSING_KEY) or [])
        output = artifact_utils.get_single_instance(output_dict[spec.OPTIMIZED_MODEL_KEY])
        try:
            eval_split_dir = artifact_utils.get_split_uri([examples], EVAL_SPLIT)
        except ValueError:
            eval_split_dir = None
        result = run_optimizer(path_utils.serving_model_path(model.uri), eval_split_dir, output.uri, config, blessed=blessed)
        output.set_string_custom_property(spec.OPTIMIZER_PROPERTY, json.dumps(result, sort_keys=True))
