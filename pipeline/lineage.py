"""Lineage of a served model version, read from the TFX ML Metadata (MLMD) store.

Given a TF Serving version directory (`<serving base>/<model>/<version>`), find the
PushedModel artifact whose `pushed_destination` is that directory, then walk MLMD's
input events backwards from the Pusher execution: the model and the Trainer execution
that made it (hyperparameters, model name, code fingerprint, train_summary.json), the
Transform graph, the Examples (dataset name and version, split counts and SHA-256
fingerprints), the Schema, the Evaluator (metrics, thresholds, failures, blessing) and,
when the pipeline has them, the infra blessing and the optimizer outcome. Executions that
only *read* the model (the HeldOutEvaluator's test accuracy) are found from the model's
consumers. Config hash and git commit come from the pipeline-run context (pipeline/run.py
stamps them there); anything not recorded prints as "unknown".

    python -m pipeline lineage --serving_base runs/serving --model digits
    python -m pipeline lineage --serving_base runs/serving --model digits --version 3 --json

    facts = trace_version("runs/serving", "digits")      # dict, the --json output
    print(format_lineage(facts))
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys

from ml_metadata.proto import metadata_store_pb2

from components.evaluate.keys import BLESSED_KEY, SPLIT_KEY, TEST_ACCURACY_KEY
from components.ingest import keys as ingest_keys
from components.optimize.keys import OPTIMIZER_PROPERTY
from components.train.keys import TRAIN_SUMMARY_FILE
from components.push.keys import PUSHED_DESTINATION_KEY, PUSHED_KEY
from pipeline.mlmd import RUN_CONTEXT, State as _State, StoreError, consumers, custom_property, execution_artifacts
from pipeline.mlmd import json_property as _json_property
from pipeline.mlmd import node_and_run, open_store, producer
from pipeline.mlmd import read_json as _read_json
from serving.cli_runner import run_cli
from serving.layout import is_model_name, list_versions

UNKNOWN = "unknown"
RUN_FACTS = ("config_path", "config_hash", "git_commit")  # custom properties on the pipeline_run context
# Inputs that are not this model's history: the Evaluator's baseline is an *older* model.
NOT_LINEAGE_INPUTS = ("baseline_model",)



class LineageError(RuntimeError):
    """The lineage cannot be traced; the message names the problem and what to do."""


@dataclasses.dataclass
class Step:
    """One execution in the lineage, with its artifacts by input/output key."""

    node: str
    execution: metadata_store_pb2.Execution
    run_id: str | None
    inputs: dict[str, list[metadata_store_pb2.Artifact]]
    outputs: dict[str, list[metadata_store_pb2.Artifact]]

    @property
    def type(self) -> str:
        return self.execution.type

    def exec_property(self, key: str):
        return custom_property(self.execution, key)  # TFX stores exec properties as custom properties


# --------------------------------------------------------------------------- locate the version


def resolve_version_dir(serving_base: str, model: str, version: int | None = None) -> tuple[int, str]:
    """(version, absolute version dir) of `<serving_base>/<model>/<version>`; default the highest.

        resolve_version_dir("runs/serving", "digits")   # -> (3, "/abs/runs/serving/digits/3")
    """
    if not is_model_name(model):
        raise ValueError(f"bad model name {model!r}: use letters, digits, '_', '.', '-' (like push.model_name in the config)")
    model_base = os.path.join(os.path.abspath(serving_base), model)
    if not os.path.isdir(model_base):
        known = sorted(d for d in os.listdir(serving_base) if os.path.isdir(os.path.join(serving_base, d))) if os.path.isdir(serving_base) else []
        where = f"models there: {', '.join(known)}" if known else "it holds no models" if os.path.isdir(serving_base) else "that directory does not exist"
        raise LineageError(f"no model {model!r} under serving base {serving_base} ({where}); "
                           "pass the push.serving_base of the pipeline's config with --serving_base")
    versions = list_versions(model_base)
    if not versions:
        raise LineageError(f"model {model!r} has no version directories under {model_base}; nothing was pushed there yet")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise LineageError(f"no version {version} of model {model!r} under {model_base}; versions there: {', '.join(map(str, versions))}")
    return version, os.path.join(model_base, str(version))


def find_pushed_model(store, version_dir: str) -> metadata_store_pb2.Artifact | None:
    """The newest pushed PushedModel whose `pushed_destination` is `version_dir` (realpath compare)."""
    target = os.path.realpath(version_dir)
    matches = [a for a in store.get_artifacts_by_type("PushedModel")
               if custom_property(a, PUSHED_KEY) == 1 and custom_property(a, PUSHED_DESTINATION_KEY)
               and os.path.realpath(str(custom_property(a, PUSHED_DESTINATION_KEY))) == target]
    return max(matches, key=lambda a: (a.create_time_since_epoch, a.id)) if matches else None


# --------------------------------------------------------------------------- walk MLMD


def _step(store, execution: metadata_store_pb2.Execution) -> Step:
    node, run_id = node_and_run(store, execution)
    inputs, outputs = execution_artifacts(store, execution.id)
    return Step(node or execution.type, execution, run_id, inputs, outputs)


def trace_executions(store, pusher: metadata_store_pb2.Execution) -> list[Step]:
    """The Pusher and every execution upstream of it (breadth first, one per node), then the
    executions that read one of those models without feeding the Pusher (held-out report)."""
    steps: dict[str, Step] = {}
    queue = [pusher]
    while queue:
        step = _step(store, queue.pop(0))
        if step.node in steps:
            continue
        steps[step.node] = step
        for key, artifacts in step.inputs.items():
            if key in NOT_LINEAGE_INPUTS:
                continue
            for artifact in artifacts:
                source = producer(store, artifact.id)
                if source is not None:
                    queue.append(source)
    models = [a for s in list(steps.values()) for arts in s.outputs.values() for a in arts if a.type == "Model"]
    for model in models:
        for consumer in sorted(consumers(store, model.id, "model"), key=lambda e: e.id):
            step = _step(store, consumer)
            if step.node not in steps and consumer.last_known_state == _State.COMPLETE:
                steps[step.node] = step
    return list(steps.values())


# --------------------------------------------------------------------------- facts


def trace_version(serving_base: str, model: str, version: int | None = None, metadata: str | None = None) -> dict:
    """Everything MLMD knows about one served version, as a JSON-ready dict.

    `metadata` defaults to `metadata.sqlite` next to the serving base (the layout of
    `runs_dir`: `runs/serving` and `runs/metadata.sqlite`).

        facts = trace_version("runs/serving", "digits", version=3)
        facts["data"]["dataset"], facts["evaluation"]["blessed"], facts["run"]["git_commit"]
    """
    version, version_dir = resolve_version_dir(serving_base, model, version)
    metadata = metadata or os.path.join(os.path.dirname(os.path.abspath(serving_base)), "metadata.sqlite")
    try:
        store = open_store(metadata)
    except StoreError as error:
        raise LineageError(str(error)) from None
    pushed = find_pushed_model(store, version_dir)
    if pushed is None:
        raise LineageError(f"no MLMD record of a push to {version_dir}: was it pushed by this pipeline? "
                           f"metadata store: {os.path.abspath(metadata)} (pass the right one with --metadata)")
    pusher = producer(store, pushed.id)
    if pusher is None:
        raise LineageError(f"PushedModel artifact {pushed.id} in {metadata} has no producing execution; the store is incomplete")
    steps = trace_executions(store, pusher)
    pusher_step = steps[0]
    facts = {
        "model_name": model,
        "version": version,
        "version_dir": version_dir,
        "metadata": os.path.abspath(metadata),
        "pushed": {
            "time": _iso(pushed.create_time_since_epoch),
            "time_ms": pushed.create_time_since_epoch,
            "run_id": pusher_step.run_id,
            "execution_id": pusher.id,
            "artifact_id": pushed.id,
            "uri": pushed.uri,
        },
        "run": _run_facts(store, pusher_step.run_id, steps),
    }
    facts.update(_artifact_facts(store, steps))
    facts["steps"] = [
        {"node": s.node, "type": s.type, "execution_id": s.execution.id, "run_id": s.run_id,
         "state": metadata_store_pb2.Execution.State.Name(s.execution.last_known_state).lower()}
        for s in steps
    ]
    return facts


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def _context_property(store, run_id: str | None, key: str):
    if not run_id:
        return None
    context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    return custom_property(context, key) if context is not None else None


def _run_facts(store, run_id: str | None, steps: list[Step]) -> dict:
    """Config path/hash and git commit of a run: its context first, else an exec property of `steps`."""
    facts = {"run_id": run_id or UNKNOWN}
    for key in RUN_FACTS:
        value = _context_property(store, run_id, key)
        if value in (None, ""):
            value = next((s.exec_property(key) for s in steps if s.exec_property(key) not in (None, "")), None)
        facts[key] = str(value) if value not in (None, "") else UNKNOWN
    return facts


def _first(steps: list[Step], type_suffix: str) -> Step | None:
    return next((s for s in steps if s.type.endswith(type_suffix)), None)


def _artifacts(steps: list[Step], type_name: str, side: str = "outputs") -> list:
    seen, found = set(), []
    for step in steps:
        for arts in getattr(step, side).values():
            for a in arts:
                if a.type.split(".")[-1] == type_name and a.id not in seen:  # "components.HeldOutReport" too
                    seen.add(a.id)
                    found.append(a)
    return found


def _artifact_facts(store, steps: list[Step]) -> dict:
    facts: dict = {}
    examples = next((a for a in _artifacts(steps, "Examples") if custom_property(a, ingest_keys.DATASET_KEY) is not None), None)
    facts["data"] = None if examples is None else {
        "dataset": custom_property(examples, ingest_keys.DATASET_KEY),
        "dataset_version": custom_property(examples, ingest_keys.DATASET_VERSION_KEY) or UNKNOWN,
        "data_source": custom_property(examples, ingest_keys.DATA_SOURCE_KEY),
        "split_counts": _json_property(examples, ingest_keys.SPLIT_COUNTS_KEY),
        "split_fingerprints": _json_property(examples, ingest_keys.SPLIT_FINGERPRINTS_KEY),
        "label_names": _json_property(examples, ingest_keys.LABEL_NAMES_KEY),
        "image_shape": _json_property(examples, ingest_keys.IMAGE_SHAPE_KEY),
        "examples_uri": examples.uri,
        "artifact_id": examples.id,
    }
    schemas = _artifacts(steps, "Schema", "inputs")
    facts["schema"] = {"uri": schemas[0].uri, "artifact_id": schemas[0].id} if schemas else None
    graphs = _artifacts(steps, "TransformGraph")
    transform = _first(steps, ".Transform")
    facts["transform"] = None if not graphs else {
        "transform_graph_uri": graphs[0].uri, "artifact_id": graphs[0].id,
        "execution_id": transform.execution.id if transform else None, "run_id": transform.run_id if transform else None,
    }
    facts["training"] = _training_facts(store, steps)
    facts["evaluation"] = _evaluation_facts(steps)
    reports = _artifacts(steps, "HeldOutReport")
    facts["heldout"] = None if not reports else {
        "test_accuracy": custom_property(reports[0], TEST_ACCURACY_KEY),
        "split": custom_property(reports[0], SPLIT_KEY),
        "report_uri": reports[0].uri,
    }
    infra = _artifacts(steps, "InfraBlessing")
    facts["infra_validation"] = None if not infra else {
        "blessed": custom_property(infra[0], BLESSED_KEY) == 1, "uri": infra[0].uri,
    }
    optimized = next((a for a in _artifacts(steps, "Model") if custom_property(a, OPTIMIZER_PROPERTY) is not None), None)
    facts["optimizer"] = None if optimized is None else {
        "outcome": _json_property(optimized, OPTIMIZER_PROPERTY), "optimized_model_uri": optimized.uri,
    }
    return facts


def _training_facts(store, steps: list[Step]) -> dict | None:
    trainer = _first(steps, ".Trainer")
    if trainer is None:
        return None
    config = _json_property(trainer.execution, "custom_config")  # TFX's Trainer exec property or {}
    model = (trainer.outputs.get("model") or [None])[0]
    model_run = (trainer.outputs.get("model_run") or [None])[0]
    summary = _read_json(os.path.join(model_run.uri, TRAIN_SUMMARY_FILE)) if model_run else None
    return {
        "model": (config.get("model") or {}).get("name", UNKNOWN),
        "model_hparams": (config.get("model") or {}).get("hparams", {}),
        "hyperparameters": config.get("train", {}),
        "code_fingerprint": config.get("code", UNKNOWN),
        "image_shape": config.get("image_shape"),
        "label_names": config.get("label_names"),
        "summary": summary,
        "model_uri": model.uri if model else None,
        "model_run_uri": model_run.uri if model_run else None,
        "execution_id": trainer.execution.id,
        "run": _run_facts(store, trainer.run_id, [trainer]),  # training may predate the pushing run
    }


def _evaluation_facts(steps: list[Step]) -> dict | None:
    evaluator = _first(steps, "evaluator.component.Evaluator")
    if evaluator is None:
        return None
    blessing = (evaluator.outputs.get("blessing") or [None])[0]
    evaluation = (evaluator.outputs.get("evaluation") or [None])[0]
    baseline = (evaluator.inputs.get("baseline_model") or [None])[0]
    facts = {
        "blessed": blessing is not None and custom_property(blessing, BLESSED_KEY) == 1,
        "metrics": {},
        "thresholds": _thresholds(evaluator.exec_property("eval_config")),
        "failed_thresholds": [],
        "baseline_model_uri": baseline.uri if baseline else None,
        "evaluation_uri": evaluation.uri if evaluation else None,
        "execution_id": evaluator.execution.id,
        "run_id": evaluator.run_id,
    }
    if evaluation is not None:
        try:
            from components.evaluate.results import read_evaluation  # TFMA: imported only when needed

            facts["metrics"], facts["failed_thresholds"] = read_evaluation(evaluation.uri)
        except Exception as error:  # files moved or deleted: still show what MLMD has
            facts["metrics_error"] = f"cannot read {evaluation.uri}: {type(error).__name__}: {error}"
    return facts


def _thresholds(eval_config_json) -> list[dict]:
    """Every configured threshold in the Evaluator's eval_config: metric, slice and bound."""
    if not eval_config_json:
        return []
    from google.protobuf import json_format
    from tensorflow_model_analysis.proto import config_pb2

    from components.evaluate.results import describe_bound  # one wording of a bound, shared with the run summary

    config = json_format.Parse(eval_config_json, config_pb2.EvalConfig(), ignore_unknown_fields=True)
    rows = []
    for spec in config.metrics_specs:
        per_class = " (each class)" if spec.binarize.class_ids.values else ""
        for metric in spec.metrics:
            gated = [(metric.threshold, None)] if metric.HasField("threshold") else []
            gated += [(p.threshold, p.slicing_specs) for p in metric.per_slice_thresholds]
            for threshold, slices in gated:
                rows.append({"metric": metric.class_name + per_class, "slice": _slices(slices), "bound": describe_bound(threshold)})
    return rows


def _slices(slicing_specs) -> str:
    if not slicing_specs:
        return "overall"
    names = [", ".join(list(s.feature_keys) + [f"{k}={v}" for k, v in s.feature_values.items()]) or "overall" for s in slicing_specs]
    return "; ".join(names)




# --------------------------------------------------------------------------- text


def _fmt(value, measured: bool = False) -> str:
    """Measured floats (metrics) to 4 decimals; configured values exactly as written."""
    if isinstance(value, float) and measured:
        return str(int(value)) if value.is_integer() else f"{value:.4f}"
    if isinstance(value, (dict, list)) or value is None:
        return json.dumps(value, sort_keys=True)
    return str(value)


def _pairs(mapping: dict | None, measured: bool = False) -> str:
    return ", ".join(f"{k}={_fmt(v, measured)}" for k, v in sorted((mapping or {}).items())) or "(none)"


def format_lineage(facts: dict) -> str:
    """The lineage as readable text, one section per stage."""
    out = [f"Lineage of model {facts['model_name']!r} version {facts['version']}"]

    def section(title, rows):
        out.append("")
        out.append(title)
        out.extend(f"  {label:<18}{value}" for label, value in rows)

    p, run = facts["pushed"], facts["run"]
    section("Push", [("served from", facts["version_dir"]), ("pushed at", f"{p['time']} (UTC)"),
                     ("pushed by run", p["run_id"]), ("config", run["config_path"]), ("config hash", run["config_hash"]),
                     ("git commit", run["git_commit"]), ("metadata", facts["metadata"])])
    data = facts["data"]
    if data:
        rows = [("dataset", f"{data['dataset']} version {data['dataset_version']} (source {data['data_source']})")]
        for split, count in (data["split_counts"] or {}).items():
            rows.append((f"split {split}", f"{count} examples, sha256 {(data['split_fingerprints'] or {}).get(split, UNKNOWN)}"))
        rows.append(("examples", data["examples_uri"]))
        if facts["schema"]:
            rows.append(("schema", facts["schema"]["uri"]))
        section("Data", rows)
    else:
        section("Data", [("examples", "no Examples artifact with dataset facts in the lineage")])
    if facts["transform"]:
        section("Transform", [("graph", facts["transform"]["transform_graph_uri"])])
    t = facts["training"]
    if t:
        s = t["summary"] or {}
        rows = [("model", f"{t['model']} ({_pairs(t['model_hparams']) if t['model_hparams'] else 'default hparams'})"), ("hyperparameters", _pairs(t["hyperparameters"])),
                ("code", t["code_fingerprint"])]
        if t["run"]["run_id"] != run["run_id"]:
            rows.append(("trained in run", f"{t['run']['run_id']} (git commit {t['run']['git_commit']}, config hash {t['run']['config_hash']})"))
        rows.append(("summary", _pairs({k: s[k] for k in ("params", "precision", "strategy", "final_step", "resumed_from_step", "train_examples") if k in s})
                     if s else "train_summary.json not found"))
        rows.append(("model uri", t["model_uri"]))
        section("Training", rows)
    e = facts["evaluation"]
    if e:
        rows = [("blessed", "yes" if e["blessed"] else "no"), ("metrics", _pairs(e["metrics"], measured=True) if not e.get("metrics_error") else e["metrics_error"])]
        rows += [("threshold", f"{th['metric']} ({th['slice']}) {th['bound']}") for th in e["thresholds"]] or [("thresholds", "(none)")]
        rows += [("FAILED", f"{f['metric']} ({f['slice']}): {_fmt(f['value'], measured=True)}, needs {f['bound']}") for f in e["failed_thresholds"]] or [("failed", "none")]
        rows.append(("baseline", e["baseline_model_uri"] or "none (first blessed model)"))
        section("Evaluation", rows)
    h = facts["heldout"]
    section("Held-out test", [("test_accuracy", f"{_fmt(h['test_accuracy'], measured=True)} (split {h['split']})"), ("report", h["report_uri"])] if h
            else [("test_accuracy", "not recorded (no HeldOutEvaluator read this model)")])
    i, o = facts["infra_validation"], facts["optimizer"]
    section("Infra validation", [("blessed", "yes" if i["blessed"] else "no")] if i else [("status", "not in this pipeline")])
    section("Optimizer", _optimizer_rows(o) if o else [("status", "not in this pipeline")])
    section("Executions", [(s["node"], f"execution {s['execution_id']}, {s['state']}, run {s['run_id']}") for s in facts["steps"]])
    return "\n".join(out)


def _optimizer_rows(optimizer: dict) -> list[tuple[str, str]]:
    outcome = optimizer["outcome"]
    if not isinstance(outcome, dict):  # not the JSON components/optimize writes: show it as is
        return [("outcome", _fmt(outcome)), ("model", optimizer["optimized_model_uri"])]
    rows = [(key.replace("_", " "), _fmt(outcome[key])) for key in ("status", "engine_requested", "saved_model", "reason") if key in outcome]
    if isinstance(outcome.get("summary"), dict):  # engine, precision, parity, accuracy delta, speedups
        short = {"parity_top1_agreement": "parity top-1", "parity_max_prob_diff": "parity max diff"}
        rows += [(short.get(key, key.replace("_", " ")), _fmt(value, measured=key not in ("engine", "precision", "parity_max_prob_diff")))
                 for key, value in outcome["summary"].items()]
    return rows + [("model", optimizer["optimized_model_uri"])]


# --------------------------------------------------------------------------- CLI


def cli(argv: list[str]) -> int:
    """`python -m pipeline lineage ...`: prints the lineage of a served version; returns the exit code."""
    return run_cli(_parser(), argv, _lineage_command, {ValueError: 2, LineageError: 1})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline lineage",
        description="Show the data, code, config, training and evaluation behind a model version that TF Serving serves.")
    parser.add_argument("--serving_base", "--serving-base", dest="serving_base", required=True,
                        help="TF Serving model base of the pipeline (push.serving_base, e.g. runs/serving)")
    parser.add_argument("--model", required=True, help="model name under the serving base (push.model_name)")
    parser.add_argument("--version", type=int, help="version directory (default: the highest, which TF Serving serves)")
    parser.add_argument("--metadata", help="SQLite MLMD store (default: metadata.sqlite next to the serving base)")
    parser.add_argument("--json", action="store_true", help="print JSON (for tools) instead of text")
    return parser


def _lineage_command(args) -> int:
    facts = trace_version(args.serving_base, args.model, args.version, args.metadata)
    print(json.dumps(facts, indent=2, default=str) if args.json else format_lineage(facts))
    return 0


if __name__ == "__main__":  # `python -m pipeline.lineage ...` works without the package's dispatcher
    sys.exit(cli(sys.argv[1:]))
