"""`python -m pipeline validate`: a CI gate for one exported model on one dataset split.

    python -m pipeline validate --model runs/serving/digits --data sklearn_digits:1.0.0/test \\
        --thresholds configs/thresholds.yaml [--baseline runs/serving/digits/1700000000] \\
        [--split test] [--report-dir validation-report]

`--model`/`--baseline`: a SavedModel folder, a TF Serving model base path
(`<serving_base>/<name>`, the highest integer version is used), a serving base holding
exactly one model, or a TFX Model artifact folder (`.../Format-Serving`).
`--data`: a pipeline config YAML (its `data:` section; `--split` is an output split
train/eval/test, default test) or a TFDS spec `name[:version][/split]`.
The model is evaluated with its `serving_default` signature (the serving contract).

Exit codes: 0 every gate passed, 1 a gate failed (or the model failed on the data),
2 usage error (bad path, bad YAML, unknown key, unknown dataset); errors name the
problem and the fix, without a traceback. Writes `report.json` and `report.md`.

    code = cli(["--model", "runs/serving/digits", "--data", "sklearn_digits",
                "--thresholds", "configs/thresholds.yaml"])
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

from components.evaluate.gates import CONFUSION_METRICS, GateError, Gates
from serving.cli_runner import run_cli
from serving.layout import list_versions

TFDS_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?::(?P<version>\d+\.\d+\.\d+))?(?:/(?P<split>[A-Za-z0-9_.\[\]%:+-]+))?$")
DEFAULT_DATA_DIR = os.path.join("runs", "tensorflow_datasets")  # the pipeline config's default
EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# Metrics a `metrics:` entry may name; each is computed from the confusion matrix.
METRICS = CONFUSION_METRICS
THRESHOLD_KEYS = Gates.keys()


class UsageError(ValueError):
    """A problem with the command line or its files (exit code 2)."""


# ---------------------------------------------------------------- model paths
def resolve_model_path(path: str, flag: str = "--model") -> str:
    """The SavedModel folder that `path` names (see module doc); UsageError otherwise."""
    if not os.path.isdir(path):
        raise UsageError(f"{flag} '{path}' is not a folder; give a SavedModel folder or a serving base path such as runs/serving/digits")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isfile(os.path.join(path, "Format-Serving", "saved_model.pb")):
        return os.path.join(path, "Format-Serving")
    versions = list_versions(path, with_saved_model=True)
    if versions:
        return os.path.join(path, str(versions[-1]))
    models = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    with_versions = [d for d in models if list_versions(os.path.join(path, d), dirs_only=False)]
    if len(with_versions) == 1:
        return resolve_model_path(os.path.join(path, with_versions[0]), flag)
    if len(with_versions) > 1:
        raise UsageError(
            f"{flag} '{path}' holds several models ({', '.join(with_versions)}); name one, e.g. {os.path.join(path, with_versions[0])}"
        )
    raise UsageError(
        f"{flag} '{path}' holds no SavedModel (no saved_model.pb, no integer version folders); "
        f"give a SavedModel folder or a serving base path such as runs/serving/digits"
    )


# ---------------------------------------------------------------- thresholds
def parse_thresholds(raw) -> dict:
    """Validate a thresholds mapping against the one gates schema; see configs/thresholds.yaml for every key."""
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"thresholds must be a mapping with at least one of: {', '.join(THRESHOLD_KEYS)} (got {raw!r})")
    try:
        out = Gates.from_dict(raw, metric_names=METRICS).to_dict()
    except GateError as error:
        raise UsageError(error.message("thresholds")) from None
    if len(out) == 1 and not out["metrics"]:
        raise UsageError(f"thresholds set no gate; add at least one of: {', '.join(THRESHOLD_KEYS)}")
    return out


def load_thresholds(path: str) -> dict:
    from pipeline.config import read_yaml_file

    raw = read_yaml_file(path, "thresholds file", "configs/thresholds.yaml", error=UsageError)
    try:
        return parse_thresholds(raw)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None


# ---------------------------------------------------------------- data
def open_data(spec: str, split: str | None, data_dir: str):
    """(source, source split name, description) for a config YAML or a TFDS spec."""
    from components.ingest.sources import open_source
    from pipeline.config import ConfigError, load_config

    if spec.endswith((".yaml", ".yml")):
        try:
            cfg = load_config(spec)
        except ConfigError as error:
            raise UsageError(f"--data {error}") from None
        split = split or "test"
        source_split = cfg["data"]["splits"].get(split, split)  # output split name -> source split
        return open_source(cfg["data"]), source_split, f"{spec} ({cfg['data']['source']} {cfg['data']['name']}, split {source_split})"
    match = TFDS_SPEC_RE.match(spec)
    if not match:
        raise UsageError(f"--data '{spec}' is neither a config file (*.yaml) nor a TFDS spec like sklearn_digits:1.0.0/test")
    from components.ingest.sources import DataSourceError

    try:
        source = open_source({"source": "tfds", "name": match["name"], "version": match["version"], "data_dir": data_dir})
    except DataSourceError as error:
        raise UsageError(f"--data '{spec}': {error} (--data takes name[:version][/split]; --data-dir is '{data_dir}')") from None
    source_split = match["split"] or split or "test"
    return source, source_split, f"tfds {match['name']}{':' + match['version'] if match['version'] else ''} split {source_split}"


def write_examples(source, split: str, path: str) -> int:
    """The split as GZIP tf.Example TFRecords, as ExampleGen writes them; returns the count."""
    import tensorflow as tf

    from components.ingest.executor import make_example

    count = 0
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in source.records(split):
            writer.write(make_example(record.value, record.label, source.label_names[record.label], source.modality))
            count += 1
    return count


# ---------------------------------------------------------------- metrics and gates
def summary_metrics(result: dict) -> dict:
    """Scalar metrics from evaluate_saved_model's result (see METRICS)."""
    per_class = result["per_class"]
    out = {"accuracy": result["accuracy"]}
    for name in ("precision", "recall", "f1"):
        values = [c[name] for c in per_class]
        out[f"macro_{name}"] = sum(values) / len(values)
        out[f"min_class_{name}"] = min(values)
    return out


def _rows_for(metric: str, value: float, bounds: dict) -> list[dict]:
    rows = []
    if "lower_bound" in bounds:
        bound = bounds["lower_bound"]
        rows.append({"metric": metric, "value": value, "bound": bound, "direction": ">=", "passed": value >= bound})
    if "upper_bound" in bounds:
        bound = bounds["upper_bound"]
        rows.append({"metric": metric, "value": value, "bound": bound, "direction": "<=", "passed": value <= bound})
    return rows


def evaluate_gates(thresholds: dict, result: dict, baseline: dict | None) -> tuple[list[dict], list[str]]:
    """Gate rows {metric, value, bound, direction, passed} and notes for gates not applied."""
    metrics = summary_metrics(result)
    rows, notes = [], []
    if "accuracy" in thresholds:
        rows += _rows_for("accuracy", metrics["accuracy"], thresholds["accuracy"])
    if "per_class_recall" in thresholds:
        for c in result["per_class"]:
            rows += _rows_for(f"recall[{c['label']}]", c["recall"], thresholds["per_class_recall"])
    for entry in thresholds["metrics"]:
        rows += _rows_for(entry["name"], metrics[entry["name"]], entry)
    if "max_accuracy_drop" in thresholds:
        if baseline is None:
            notes.append("max_accuracy_drop not checked: no --baseline given (the first model has nothing to compare to)")
        else:
            drop = baseline["accuracy"] - metrics["accuracy"]
            rows.append({"metric": "accuracy_drop_vs_baseline", "value": drop, "bound": thresholds["max_accuracy_drop"], "direction": "<=",
                         "passed": drop <= thresholds["max_accuracy_drop"]})
    return rows, notes


def format_table(rows: list[dict]) -> str:
    lines = [f"{'metric':28s} {'value':>8s}  {'bound':>10s}  result", "-" * 58]
    for r in rows:
        lines.append(f"{r['metric']:28s} {r['value']:8.4f}  {r['direction']} {r['bound']:7.4f}  {'pass' if r['passed'] else 'FAIL'}")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    baseline = report["baseline"]
    lines = [
        f"# Model validation: {verdict}", "",
        f"- model: `{report['model']}`",
        f"- baseline: `{baseline['path']}` (accuracy {baseline['accuracy']:.4f})" if baseline else "- baseline: none",
        f"- data: {report['data']}, {report['num_examples']} examples", "",
        "| metric | value | bound | result |", "|---|---:|---:|---|",
    ]
    for r in report["gates"]:
        lines.append(f"| {r['metric']} | {r['value']:.4f} | {r['direction']} {r['bound']:.4f} | {'pass' if r['passed'] else '**FAIL**'} |")
    lines += [""] + [f"> {note}" for note in report["notes"]]
    lines += ["", "| class | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {c['label']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |" for c in report["per_class"]]
    return "\n".join(lines) + "\n"


def write_reports(report_dir: str, report: dict) -> None:
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(report_dir, "report.md"), "w") as f:
        f.write(render_markdown(report))


# ---------------------------------------------------------------- command
def _evaluate(model_dir: str, files: list[str], data_labels: list[str], flag: str) -> dict:
    from components.evaluate.heldout.executor import evaluate_saved_model
    from serving.contract import EXAMPLES_SIGNATURE, LABEL_ASSET, read_label_names

    try:
        labels = read_label_names(model_dir)
    except OSError:
        raise UsageError(f"{flag} '{model_dir}' has no assets/{LABEL_ASSET}; export it with components/train/export.py") from None
    if labels != list(data_labels):
        raise UsageError(
            f"{flag} '{model_dir}' predicts classes {labels[:10]}, the data has {list(data_labels)[:10]}; validate it on its own dataset"
        )
    try:
        return evaluate_saved_model(model_dir, files)
    except KeyError:
        raise UsageError(f"{flag} '{model_dir}' has no '{EXAMPLES_SIGNATURE}' signature; it does not follow the serving contract") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline validate", description="Gate an exported model on a dataset split (CI).")
    ap.add_argument("--model", required=True, help="SavedModel folder or serving base path (latest version), e.g. runs/serving/digits")
    ap.add_argument("--data", required=True,
                    help="pipeline config YAML, or TFDS spec name[:version][/split], e.g. sklearn_digits:1.0.0/test")
    ap.add_argument("--thresholds", required=True, help="thresholds YAML, e.g. configs/thresholds.yaml")
    ap.add_argument("--baseline", help="model to compare against for max_accuracy_drop (same forms as --model)")
    ap.add_argument("--split", help="split to evaluate (default test; a config's output split train/eval/test)")
    ap.add_argument("--report-dir", default="validation-report", help="where report.json and report.md go (default ./validation-report)")
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"TFDS data_dir for a TFDS spec (default {DEFAULT_DATA_DIR})")
    return ap


def cli(argv: list[str]) -> int:
    return run_cli(build_parser(), argv, _run, {UsageError: EXIT_USAGE}, prefix="usage error")


def _run(args) -> int:
    from components.ingest.sources import DataSourceError

    thresholds = load_thresholds(args.thresholds)
    model_dir = resolve_model_path(args.model)
    baseline_dir = resolve_model_path(args.baseline, "--baseline") if args.baseline else None
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()  # CI logs: one line per dataset, not progress bars
    try:
        source, split, description = open_data(args.data, args.split, args.data_dir)
        with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
            files = [os.path.join(tmp, "examples.tfrecord.gz")]
            if write_examples(source, split, files[0]) == 0:
                raise UsageError(f"--data {description} has no examples")
            try:
                result = _evaluate(model_dir, files, source.label_names, "--model")
                baseline = _evaluate(baseline_dir, files, source.label_names, "--baseline") if baseline_dir else None
            except UsageError:
                raise
            except Exception as error:  # noqa: BLE001  (the model cannot answer this data: a failed gate)
                detail = f"{type(error).__name__}: {str(error).splitlines()[0][:500]}"
                print(f"error: the model failed on {description}: {detail}", file=sys.stderr)
                return EXIT_FAIL
    except DataSourceError as error:
        raise UsageError(f"--data: {error}") from None

    rows, notes = evaluate_gates(thresholds, result, baseline)
    passed = all(r["passed"] for r in rows)
    report = {
        "passed": passed, "model": model_dir, "data": description, "split": split,
        "num_examples": result["num_examples"], "metrics": summary_metrics(result),
        "baseline": {"path": baseline_dir, "accuracy": baseline["accuracy"]} if baseline else None,
        "gates": rows, "notes": notes, "thresholds": thresholds,
        "per_class": result["per_class"], "label_names": result["label_names"], "confusion_matrix": result["confusion_matrix"],
    }
    write_reports(args.report_dir, report)
    print(f"model {model_dir} on {description} ({result['num_examples']} examples)")
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    failed = [r["metric"] for r in rows if not r["passed"]]
    print(f"\n{'PASSED' if passed else 'FAILED: ' + ', '.join(failed)}; report in {args.report_dir}/report.md")
    return EXIT_PASS if passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
