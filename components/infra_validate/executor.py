"""Infra validation: load the candidate in a real model server and ask it real questions.

TFX's InfraValidator launches TF Serving through Docker or Kubernetes; neither runs
here, so this executor starts the serving engine (serving/launcher.py) as a subprocess on a
free loopback port: `tensorflow_model_server` when it is on PATH, else the project's embedded server
(`python -m serving serve`, same flags). It then

1. waits (within `timeout_seconds`) for ModelService.GetModelStatus to say AVAILABLE,
2. sends N eval examples to every signature of the serving contract (Predict on
   `serving_default` and `serving_images`, Classify on `classification`),
3. checks shapes [N, K], dtypes, probabilities summing to 1, class names = the label
   asset, and that the three signatures agree with each other,
4. stops the server (SIGTERM, then kill).

With `make_warmup`, the candidate copy the server loads already carries TF Serving warmup
requests (so the server replays them at load), and a blessed model is written out with
them. When a Transform graph is given, the training/serving skew check
(components/infra_validate/skew.py) runs too. A model problem never raises: it is returned
as blessed=False with the reason (including the server's last log lines).

    result = run_infra_validation("model/Format-Serving", eval_files, parse_config({}), "digits")
    result["blessed"], result["reason"]
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time

import grpc

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.examples_layout import split_files
from components.infra_validate import keys
from components.infra_validate import skew as skew_lib
from components.infra_validate.config import parse_config
from components.infra_validate.probe import ModelProblem, probe_signatures, read_served_label_names, signature_disagreement
from components.train.keys import TRAINED_MODEL_FILE
from components.infra_validate.warmup import EvalSample, read_eval_sample, warmup_logs, write_warmup_requests
from serving.contract import CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE
from serving.launcher import ModelServerProcess, ServerNotAvailable, wait_until_available

log = logging.getLogger("pipeline.infra_validation")
MAX_MESSAGE_BYTES = 16 << 20  # requests here are a few KB; keep the client's limit tight
EVAL_SPLIT = "eval"


def _single(input_dict, key):
    artifacts = input_dict.get(key) or []
    return artifacts[0] if artifacts else None


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        out_model = artifact_utils.get_single_instance(output_dict["validated_model"])
        transform_graph, model_run = _single(input_dict, "transform_graph"), _single(input_dict, "model_run")
        result = run_infra_validation(
            path_utils.serving_model_path(model.uri),
            split_files(examples.uri, EVAL_SPLIT),
            parse_config(exec_properties["config"]),
            exec_properties["model_name"],
            transform_graph_uri=transform_graph.uri if transform_graph else None,
            keras_model_path=os.path.join(model_run.uri, TRAINED_MODEL_FILE) if model_run else None,
            output_model_dir=path_utils.serving_model_dir(out_model.uri),
        )
        record_blessing(blessing, result)


def record_blessing(blessing, result: dict) -> None:
    """Custom properties + marker file + report.json on the InfraBlessing artifact."""
    blessing.set_int_custom_property(keys.BLESSED_KEY, int(result["blessed"]))
    blessing.set_string_custom_property(keys.REASON_KEY, result["reason"])
    if result["serving"].get("engine"):
        blessing.set_string_custom_property(keys.ENGINE_KEY, result["serving"]["engine"])
    skew = result.get("skew")
    if skew and skew.get("max_abs_diff") is not None:
        blessing.set_float_custom_property(keys.SKEW_MAX_ABS_DIFF_KEY, skew["max_abs_diff"])
    # "not wired": no transform_graph input; "not run": no trained Keras model to compare with.
    status = "not wired" if not skew else {True: "passed", False: "failed"}.get(skew["passed"], "not run")
    blessing.set_string_custom_property(keys.SKEW_CHECK_KEY, status)
    os.makedirs(blessing.uri, exist_ok=True)
    open(os.path.join(blessing.uri, keys.BLESSED_FILE if result["blessed"] else keys.NOT_BLESSED_FILE), "w").close()
    with open(os.path.join(blessing.uri, keys.REPORT_FILE), "w") as f:
        json.dump(result, f, indent=2, default=str)


def serve_and_probe(version_dir: str, model_name: str, sample: EvalSample, cfg: dict, workdir: str) -> dict:
    """Serve `<workdir>/<model_name>/1` (a copy of version_dir) and probe it; ModelProblem on failure."""
    label_names = read_served_label_names(version_dir)
    base = os.path.dirname(version_dir)
    server = ModelServerProcess(model_name, base, os.path.join(workdir, "server.log"))
    report = {"engine": server.engine}
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_http_proxy", 0),  # a CI proxy must not intercept loopback calls
        ],
    )
    try:
        with server:
            try:
                report["load_seconds"] = round(wait_until_available(server, channel, cfg["timeout_seconds"]), 2)
                started = time.monotonic()
                results = probe_signatures(channel, model_name, sample, label_names)
                report["probe_seconds"] = round(time.monotonic() - started, 3)
            except (ModelProblem, ServerNotAvailable) as problem:
                server.stop()
                tail = server.log_tail()
                raise ModelProblem(f"{problem}" + (f"\nmodel server log (last lines):\n{tail}" if tail else "")) from None
        disagreement = signature_disagreement(results)
        report["signature_max_abs_diff"] = disagreement
        if disagreement > cfg["skew_atol"]:
            raise ModelProblem(
                f"the serving signatures disagree on the same eval examples by up to {disagreement:.3g} "
                f"(allowed {cfg['skew_atol']:g}); {sample.raw_signature} and serving_default must preprocess alike"
            )
    finally:
        channel.close()
    return report


def run_infra_validation(
    model_dir: str,
    examples_files: list[str],
    cfg: dict,
    model_name: str,
    *,
    transform_graph_uri: str | None = None,
    keras_model_path: str | None = None,
    output_model_dir: str | None = None,
) -> dict:
    """Validate one candidate; never raises for a model problem.

    Returns {"blessed": bool, "reason": str, "skew": dict | None, "serving": dict, "warmup": int}.
    When blessed and `output_model_dir` is given, the served copy (with warmup requests
    when `cfg["make_warmup"]`) is written there.
    """
    cfg = parse_config(cfg)
    result = {"blessed": False, "reason": "", "skew": None, "serving": {}, "warmup": 0}
    if not cfg["enabled"]:
        result.update(blessed=True, reason="infra validation is disabled (infra_validation.enabled: false)")
        if output_model_dir:
            shutil.copytree(model_dir, output_model_dir)
        return result
    sample = read_eval_sample(examples_files, cfg["num_examples"])
    reasons = []
    if transform_graph_uri:
        try:
            result["skew"] = skew_lib.check_skew(
                model_dir, transform_graph_uri, examples_files, n=cfg["skew_examples"], atol=cfg["skew_atol"],
                keras_model_path=keras_model_path,
            )
            if not result["skew"]["passed"]:
                reasons.append(result["skew"]["reason"])
        except skew_lib.SkewCheckUnavailable as error:
            result["skew"] = {"passed": None, "reason": f"skew check not run: {error}"}
            log.warning("skew check not run: %s", error)
        except Exception as error:  # noqa: BLE001  (e.g. an unloadable SavedModel: blocking is the safe side)
            message = f"skew check failed to run the model: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            result["skew"] = {"passed": False, "reason": message}
            reasons.append(message)

    with tempfile.TemporaryDirectory(prefix="infra-validation-") as workdir:
        version_dir = os.path.join(workdir, model_name, "1")
        shutil.copytree(model_dir, version_dir)
        if cfg["make_warmup"]:
            logs = warmup_logs(model_name, sample)
            write_warmup_requests(version_dir, logs)  # the server replays them while loading
            result["warmup"] = len(logs)
        try:
            result["serving"] = serve_and_probe(version_dir, model_name, sample, cfg, workdir)
        except ModelProblem as problem:
            reasons.append(str(problem).replace(version_dir, model_dir))  # name the candidate, not the temp copy
        result["blessed"] = not reasons
        result["reason"] = "\n".join(reasons) if reasons else (
            f"served by {result['serving']['engine']} and answered {len(sample)} examples on "
            f"{EXAMPLES_SIGNATURE}, {sample.raw_signature} and {CLASSIFY_SIGNATURE}"
        )
        if result["blessed"] and output_model_dir:
            shutil.copytree(version_dir, output_model_dir)
    return result
