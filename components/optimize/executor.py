"""ModelOptimizer executor: optimize if this machine can, check parity, never block a push.

Outcomes, recorded in the output Model's custom property `optimizer` and in
`<optimized_model uri>/optimizer.json`:

| status          | Format-Serving holds        | when                                                      |
|-----------------|-----------------------------|-----------------------------------------------------------|
| `optimized`     | the TF-TRT SavedModel       | TF-TRT converted it and parity passed                     |
| `exported`      | the original SavedModel     | an ONNX model / TensorRT plan was written and passed parity (TF Serving serves neither) |
| `skipped`       | the original SavedModel     | no usable engine here, engine `none`, not blessed, no eval data (`reason` says which) |
| `parity_failed` | the original SavedModel     | the optimized model disagreed with the original too much   |
| `error`         | the original SavedModel     | the conversion raised; `reason` has the error              |

    result = run_optimizer("trainer/model/7/Format-Serving", "examples/3/Split-eval",
                           "optimizer/optimized_model/9", validate_optimize_config({"engine": "onnx"}))
    result["status"], result["parity"]["top1_agreement"]
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

from absl import logging
import tensorflow as tf

from components.tfx_compat import tfx  # noqa: F401  (TFX import order; see components/tfx_compat.py)
from tfx.components.util.model_utils import is_model_blessed
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.optimize import spec
from components.optimize.config import OptimizeConfig
from components.optimize.environment import Accelerators, detect_accelerators
from components.optimize.eval_data import EvalInputs, read_eval_inputs, serving_image_shape
from components.optimize.files import copy_tree, write_bytes
from components.optimize.onnx_export import EngineUnsupportedError, build_tensorrt_engine, export_onnx, onnxruntime_predictor, tensorrt_predictor
from components.optimize.parity import ParityResult, check_parity, check_saved_model_parity, saved_model_predictor, worst_of
from components.optimize.trt import convert_with_tf_trt
from serving.contract import IMAGES_SIGNATURE, LABEL_ASSET
from serving.server.servable import read_signature_defs

SERVING_DIR = "Format-Serving"
RESULT_FILE = "optimizer.json"
ONNX_FILE = "onnx/model.onnx"
TENSORRT_PLAN = "tensorrt/model.plan"
EVAL_SPLIT = "eval"
NOT_SERVED_NOTE = (
    "TF Serving cannot serve {what}; the pushed SavedModel is the original. {files} "
    "(input `images` uint8 [N,H,W,C], output `probabilities` float32 [N,K], label names beside it) "
    "are for deployments that serve {what}."
)


class _Run:
    """One optimizer run's inputs, shared by the engine functions below."""

    def __init__(self, model_dir: str, output_uri: str, config: OptimizeConfig, eval_inputs: EvalInputs):
        self.model_dir = model_dir
        self.output_uri = output_uri
        self.serving_out = os.path.join(output_uri, SERVING_DIR)
        self.config = config
        self.eval_inputs = eval_inputs
        self.parity_inputs = eval_inputs[: config.parity_examples]

    def parity_bounds(self) -> dict:
        return {"min_top1_agreement": self.config.parity_min_top1_agreement, "max_prob_diff": self.config.parity_max_prob_diff}

    def write_extra(self, relative_path: str, data: bytes) -> None:
        write_bytes(os.path.join(self.output_uri, relative_path), data)
        with tf.io.gfile.GFile(os.path.join(self.model_dir, "assets", LABEL_ASSET), "rb") as f:
            write_bytes(os.path.join(self.output_uri, os.path.dirname(relative_path), LABEL_ASSET), f.read())


def _outcome(parity: ParityResult, passed_status: str, **fields) -> dict:
    if parity.passed:
        return {"status": passed_status, "parity": parity.to_dict(), **fields}
    fields["saved_model"] = "original"
    fields.pop("files", None)
    return {"status": "parity_failed", "parity": parity.to_dict(), "reason": f"{parity.describe()}; the original model is passed through", **fields}


def _run_tf_trt(run: _Run) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        converted = convert_with_tf_trt(
            run.model_dir,
            os.path.join(tmp, "saved_model"),
            precision=run.config.precision,
            batch_sizes=run.config.batch_sizes,
            eval_inputs=run.eval_inputs,
            calibration_examples=run.config.calibration_examples,
        )
        per_signature = check_saved_model_parity(run.model_dir, converted, run.parity_inputs, **run.parity_bounds())
        parity = worst_of(per_signature)
        if parity.passed:
            copy_tree(converted, run.serving_out)
    return _outcome(
        parity, "optimized", engine="tf-trt", precision=run.config.precision, saved_model="optimized",
        parity_by_signature={k: v.to_dict() for k, v in per_signature.items()},
    )


def _images_parity(run: _Run, candidate, compared: str, batch_size: int = 64) -> ParityResult:
    reference, _ = saved_model_predictor(run.model_dir, IMAGES_SIGNATURE)
    return check_parity(reference, candidate, run.parity_inputs.images, compared=compared, batch_size=batch_size, **run.parity_bounds())


def _run_onnx(run: _Run) -> dict:
    onnx_bytes = export_onnx(run.model_dir)
    parity = _images_parity(run, onnxruntime_predictor(onnx_bytes), "ONNX Runtime CPU vs serving_images")
    result = _outcome(
        parity, "exported", engine="onnx", precision="FP32", saved_model="original", files=[ONNX_FILE],
        note=NOT_SERVED_NOTE.format(what="ONNX", files=ONNX_FILE)
        + ("" if run.config.precision == "FP32" else f" optimize.precision {run.config.precision} applies to TensorRT engines; the ONNX export is FP32."),
    )
    if parity.passed:
        run.write_extra(ONNX_FILE, onnx_bytes)
    return result


def _run_tensorrt(run: _Run) -> dict:
    onnx_bytes = export_onnx(run.model_dir)
    plan = build_tensorrt_engine(onnx_bytes, precision=run.config.precision, batch_sizes=run.config.batch_sizes, image_shape=run.eval_inputs.images.shape[1:])
    parity = _images_parity(run, tensorrt_predictor(plan), "TensorRT engine vs serving_images", batch_size=max(run.config.batch_sizes))
    files = [ONNX_FILE, TENSORRT_PLAN]
    result = _outcome(
        parity, "exported", engine="tensorrt", precision=run.config.precision, saved_model="original", files=files,
        batch_sizes=list(run.config.batch_sizes), note=NOT_SERVED_NOTE.format(what="TensorRT plans", files=" and ".join(files)),
    )
    if parity.passed:
        run.write_extra(ONNX_FILE, onnx_bytes)
        run.write_extra(TENSORRT_PLAN, plan)
    return result


ENGINE_RUNNERS: dict[str, Callable[[_Run], dict]] = {"tf-trt": _run_tf_trt, "onnx": _run_onnx, "tensorrt": _run_tensorrt}


def choose_engine(requested: str, accelerators: Accelerators) -> tuple[str | None, str]:
    """(engine to run, or None with the reason why none runs)."""
    if requested == "none":
        return None, "optimize.engine is 'none'"
    if requested == "auto":
        if accelerators.tf_trt_ready:
            return "tf-trt", ""
        if accelerators.tensorrt_ready:
            return "tensorrt", ""
        return None, f"no TensorRT path on this machine: {accelerators.describe()}"
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
        if IMAGES_SIGNATURE not in read_signature_defs(model_dir):
            return {"status": "skipped", "engine": engine, "reason": f"the model has no {IMAGES_SIGNATURE} signature (a text model); the TensorRT and ONNX paths optimize image models only"}
        eval_inputs = read_eval_inputs(eval_split_dir, max(config.parity_examples, config.calibration_examples), serving_image_shape(model_dir))
        if len(eval_inputs) == 0:
            raise FileNotFoundError(f"{eval_split_dir} holds no examples")
        return ENGINE_RUNNERS[engine](_Run(model_dir, output_uri, config, eval_inputs))
    except EngineUnsupportedError as e:
        return {"status": "skipped", "engine": engine, "reason": str(e)}
    except FileNotFoundError as e:
        return {"status": "skipped", "engine": engine, "reason": f"no eval examples for parity ({e})"}
    except Exception as e:  # an optimizer bug must not stop the original model from being pushed
        logging.exception("[ModelOptimizer] engine %s failed", engine)
        return {"status": "error", "engine": engine, "reason": f"{type(e).__name__}: {e}"[:2000] + "; the original model is passed through"}


def run_optimizer(model_dir: str, eval_split_dir: str | None, output_uri: str, config: OptimizeConfig, *, blessed: bool = True, accelerators: Accelerators | None = None) -> dict[str, Any]:
    """Optimizes (or passes through) the SavedModel at `model_dir` into `<output_uri>/Format-Serving`.

    Returns the result dict that is also written to `<output_uri>/optimizer.json`.
    """
    accelerators = accelerators or detect_accelerators()
    result = _engine_result(model_dir, eval_split_dir, output_uri, config, blessed, accelerators)
    result.setdefault("saved_model", "original")
    result.update(engine_requested=config.engine, detected=accelerators.to_dict())
    serving_out = os.path.join(output_uri, SERVING_DIR)
    if result["saved_model"] == "original":
        if tf.io.gfile.exists(serving_out):
            tf.io.gfile.rmtree(serving_out)  # nothing half-written may be pushed
        copy_tree(model_dir, serving_out)
    write_bytes(os.path.join(output_uri, RESULT_FILE), json.dumps(result, indent=2, sort_keys=True))
    if result["status"] in ("optimized", "exported"):
        logging.info("[ModelOptimizer] %s with %s (%s): %s", result["status"], result["engine"], result["precision"], json.dumps(result["parity"]))
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
