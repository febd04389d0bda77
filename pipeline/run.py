"""Run a pipeline with LocalDagRunner under our own run id, and summarise it from MLMD.

    summary = run_pipeline(cfg)       # dict, see README "Run summary"
"""
from __future__ import annotations

import datetime
import json
import os
import time

from components.tfx_compat import tfx
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants as compiler_constants
from tfx.orchestration.portable import runtime_parameter_utils

from pipeline.build import build_pipeline, paths
from components.evaluate.keys import BLESSED_KEY, TEST_ACCURACY_KEY
from components.infra_validate import keys as infra_keys
from components.optimize.keys import OPTIMIZED_MODEL_KEY, OPTIMIZER_PROPERTY
from components.train.keys import TRAIN_SUMMARY_FILE
from components.push.keys import (ALREADY_PUSHED_KEY, MODEL_NAME_KEY, NOT_PUSHED_REASON_KEY, PUSHED_DESTINATION_KEY,
                                  PUSHED_KEY, PUSHED_VERSION_KEY)
from pipeline.mlmd import RUN_CONTEXT
from pipeline.mlmd import custom_property as _prop
from pipeline.mlmd import open_or_create_store as open_store
from pipeline.mlmd import run_executions

_STATE = metadata_store_pb2.Execution.State
STATUS = {_STATE.COMPLETE: "ran", _STATE.CACHED: "cached", _STATE.FAILED: "failed", _STATE.RUNNING: "failed", _STATE.NEW: "failed"}

# Exit codes of `python -m pipeline run` (documented in README).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_BLESSED, EXIT_DATA_ANOMALIES, EXIT_LOCKED = 0, 1, 2, 3, 4, 75


def new_run_id() -> str:
    return datetime.datetime.now().isoformat(timespec="microseconds")


def run_pipeline(cfg: dict, run_id: str | None = None) -> dict:
    """Run once; return the summary. Component errors are recorded, then re-raised."""
    run_id = run_id or new_run_id()
    pipeline = build_pipeline(cfg)
    ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(ir, {compiler_constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    started = time.time()
    error = None
    try:
        tfx.orchestration.LocalDagRunner().run_with_ir(ir)
    except Exception as e:  # summarise what did run, then let the CLI report the error
        error = e
    summary = summarize(cfg, run_id, [c.id for c in pipeline.components if not isinstance(c, tfx.dsl.Resolver)])
    summary["duration_s"] = round(time.time() - started, 1)
    summary["git_commit"] = record_run_facts(cfg, run_id)
    if error is not None:
        summary["error"] = f"{type(error).__name__}: {error}"
        raise PipelineRunError(summary, error) from error
    return summary


def record_run_facts(cfg: dict, run_id: str) -> str:
    """Stamp config path/hash and git commit on the MLMD pipeline_run context (for lineage).

    Kept off component properties on purpose: a new commit must not invalidate the cache.
    """
    from pipeline.record import git_commit

    commit = git_commit()
    store = open_store(paths(cfg)["metadata"])
    ctx = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if ctx is not None:
        for key, value in (("config_path", cfg.get("_config_path") or ""), ("config_hash", cfg.get("_config_hash") or ""), ("git_commit", commit)):
            ctx.custom_properties[key].string_value = str(value)
        store.put_contexts([ctx])
    return commit


class PipelineRunError(RuntimeError):
    def __init__(self, summary: dict, cause: Exception):
        super().__init__(str(cause))
        self.summary, self.cause = summary, cause


def summarize(cfg: dict, run_id: str, node_ids: list[str]) -> dict:
    """Statuses of the executing components, gates, metrics and what was pushed.

    Resolvers are not components that execute: TFX compiles them into the input
    resolution of their consumers, so the baseline they found is read from the
    Evaluator's `baseline_model` input (`baseline`)."""
    store = open_store(paths(cfg)["metadata"])
    runs = run_executions(store, cfg["pipeline_name"], run_id)
    components = []
    for node in node_ids:
        ex = runs.get(node)
        status = STATUS.get(ex["execution"].last_known_state, "failed") if ex else "skipped"
        components.append({"name": node, "status": status})
    summary = {
        "pipeline_name": cfg["pipeline_name"],
        "run_id": run_id,
        "config_path": cfg.get("_config_path"),
        "config_hash": cfg.get("_config_hash"),
        "components": components,
        "blessed": False,
        "failing_thresholds": [],
        "metrics": {},
        "pushed": None,
        "baseline": None,
    }
    evaluator = runs.get("Evaluator")
    if evaluator:
        base = evaluator["inputs"].get("baseline_model", [])
        summary["baseline"] = {"model_id": base[0].id, "uri": base[0].uri} if base else None
        blessing = evaluator["outputs"].get("blessing", [])
        summary["blessed"] = bool(blessing) and _prop(blessing[0], BLESSED_KEY) == 1
        evaluation = evaluator["outputs"].get("evaluation", [])
        if evaluation:
            from components.evaluate.results import read_evaluation

            metrics, failures = read_evaluation(evaluation[0].uri)
            summary["metrics"].update(metrics)
            summary["failing_thresholds"] = failures
    heldout = runs.get("HeldOutEvaluator")
    if heldout and heldout["outputs"].get("report"):
        report = heldout["outputs"]["report"][0]
        summary["metrics"]["test_accuracy"] = _prop(report, TEST_ACCURACY_KEY)
        summary["test_report_uri"] = report.uri
    trainer = runs.get("Trainer")
    if trainer and trainer["outputs"].get("model_run"):
        summary["model_run_uri"] = trainer["outputs"]["model_run"][0].uri
        try:
            with open(os.path.join(summary["model_run_uri"], TRAIN_SUMMARY_FILE)) as f:
                summary["training"] = json.load(f)
        except OSError:
            pass
    optimizer = runs.get("ModelOptimizer")
    if optimizer and optimizer["outputs"].get(OPTIMIZED_MODEL_KEY):
        raw = _prop(optimizer["outputs"][OPTIMIZED_MODEL_KEY][0], OPTIMIZER_PROPERTY)
        summary["optimizer"] = json.loads(raw) if raw else None
    infra = runs.get("InfraValidator")
    if infra and infra["outputs"].get("blessing"):
        b = infra["outputs"]["blessing"][0]
        infra_ok = _prop(b, BLESSED_KEY) == 1
        summary["infra"] = {
            "status": "blessed" if infra_ok else "not blessed", "reason": _prop(b, infra_keys.REASON_KEY, ""),
            "engine": _prop(b, infra_keys.ENGINE_KEY), "skew_check": _prop(b, infra_keys.SKEW_CHECK_KEY),
            "skew_max_abs_diff": _prop(b, infra_keys.SKEW_MAX_ABS_DIFF_KEY),
        }
        summary["evaluator_blessed"] = summary["blessed"]
        summary["blessed"] = summary["blessed"] and infra_ok  # both gates must pass to push
    pusher = runs.get("Pusher")
    if pusher and pusher["outputs"].get("pushed_model"):
        pushed = pusher["outputs"]["pushed_model"][0]
        if _prop(pushed, PUSHED_KEY) == 1:
            info = {"model_name": _prop(pushed, MODEL_NAME_KEY), "version": _prop(pushed, PUSHED_VERSION_KEY),
                    "path": _prop(pushed, PUSHED_DESTINATION_KEY)}
            if pusher["execution"].last_known_state == _STATE.CACHED or _prop(pushed, ALREADY_PUSHED_KEY) == 1:
                summary["already_pushed"] = info  # nothing new was pushed this run (cached, or a rerun found its push)
            else:
                summary["pushed"] = info
        else:
            summary["not_pushed_reason"] = _prop(pushed, NOT_PUSHED_REASON_KEY)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"Pipeline {s['pipeline_name']}  run {s['run_id']}  ({s.get('duration_s', '?')} s)"]
    lines.append("  components: " + ", ".join(f"{c['name']}={c['status']}" for c in s["components"]))
    m = s["metrics"]
    if m:
        lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(m.items())))
    lines.append(f"  blessed: {'yes' if s['blessed'] else 'no'}")
    if s.get("infra"):
        inf = s["infra"]
        lines.append(f"  infra validation: {inf['status']}" + (f" ({inf['reason']})" if inf.get("reason") and inf["status"] != "blessed" else "")
                     + (f"; skew max |diff| {inf['skew_max_abs_diff']:.2e}" if isinstance(inf.get("skew_max_abs_diff"), float) else ""))
    if s.get("optimizer"):
        from components.optimize.summary import headline

        opt = s["optimizer"]
        lines.append(f"  optimizer: {opt.get('status')}" + (f" ({opt['reason']})" if opt.get("reason") else ""))
        if opt.get("summary"):
            lines.append(f"    {'optimized' if opt.get('status') == 'optimized' else 'fastest candidate'}: {headline(opt['summary'])}")
    for f in s.get("failing_thresholds", []):
        lines.append(f"    FAILED {f['metric']} on {f['slice']}: {f['value']:.4f} (bound {f['bound']})" if isinstance(f["value"], float) else f"    FAILED {f['metric']} on {f['slice']}: {f['value']} (bound {f['bound']})")
    if s.get("pushed"):
        lines.append(f"  pushed: {s['pushed']['model_name']} version {s['pushed']['version']} -> {s['pushed']['path']}")
    elif s.get("already_pushed"):
        lines.append(f"  pushed: nothing new (this model is already version {s['already_pushed']['version']})")
    else:
        lines.append(f"  pushed: nothing ({s.get('not_pushed_reason') or 'see above'})")
    if s.get("error"):
        lines.append(f"  error: {s['error']}")
    return "\n".join(lines)
