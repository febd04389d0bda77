"""Run report: one self-contained HTML page per pipeline run.

`render_report(record, out_path)` turns a plain-dict *run record* into an HTML file
with the training curves, the test-split confusion matrix, per-class metrics, the
augmentation preview, the evaluation thresholds and the optimizer, infra-validation
and push outcomes. The file has no external resources (PNGs are embedded as base64
data URIs, CSS is inline, no scripts), so it can be mailed, attached to a ticket or
opened offline.

    from pipeline.report import render_report, report_path, save_record

    save_record("runs", record)                     # runs/reports/<safe run id>/run_record.json
    render_report(record, report_path("runs", record["run_id"]))

Re-render later with `python -m pipeline report RUN_ID [--runs-dir runs]` (`cli`).

Run record schema
-----------------
A JSON-compatible dict. Only `pipeline_name` and `run_id` are required; every other
field is optional, and a section whose data is missing or malformed shows
"not available: <why>" instead of failing the report.

Top level (the section that shows each field in brackets):

    pipeline_name   str, required                              [header, lineage]
    run_id          str, required: the TFX run id, e.g.        [header, lineage, folder name]
                    "2026-11-22T01:02:03.123456"
    started_at      str, ISO 8601                              [header, lineage]
    duration_s      float, seconds                             [header, lineage]
    status          str: "succeeded", "failed", "running", ... [header badge]
    config_path, config_hash, git_commit: str                  [lineage]
    components      [{"name": str, "status": "ran" | "cached" | "skipped" | "failed"}]
                                                               [components]
    training        dict, below                                [training]
    test            dict, below                                [test split evaluation]
    augmentation_preview_png: str, path of a PNG file; a relative path is relative
                    to the report's folder                     [augmentation preview]
    thresholds      [{"metric": str, "value": float, "bound": float,
                      "direction": ">=" | "<=" | "change", "passed": bool}]
                                                               [thresholds]
    blessed         bool, the Evaluator's verdict              [header, thresholds]
    optimizer       {"status": str, "reason": str, ...details} [inference optimizer]
    infra           {"status": str, "reason": str, ...details} [infra validation]
    pushed          {"model_name": str, "version": int, "path": str}, or null when
                    the model was not pushed                   [header, pushed model]

`training`:
    `history`: Keras `History.history`, {"loss": [...], "accuracy": [...],
    "val_loss": [...], "val_accuracy": [...]} (one number per epoch; any series may be
    missing; an accuracy metric under another name such as "sparse_categorical_accuracy"
    is found too), `model_name`: str, `hparams`: dict, `precision`: str (e.g.
    "mixed_float16"), `epochs`: int, `steps`: int.

`test`:
    `split`: str (default "test"), `accuracy`: float, `num_examples`: int,
    `confusion_matrix`: K x K counts, `matrix[i][j]` = examples of true class i predicted
    as class j, `label_names`: K names in class-id order (default "0".."K-1"),
    `per_class`: list of `{"label", "precision", "recall", "f1", "support"}`. Without
    `per_class`, it is derived from the confusion matrix; without `accuracy` and
    `num_examples`, so are they. Undefined ratios (a class never predicted) show "n/a".

Example (minimal and fuller):

    render_report({"pipeline_name": "digits", "run_id": "2026-11-22T01:02:03"}, "report.html")
    render_report({
        "pipeline_name": "digits", "run_id": "2026-11-22T01:02:03", "status": "succeeded",
        "training": {"history": {"loss": [1.2, 0.4], "val_loss": [1.0, 0.5]}},
        "test": {"confusion_matrix": [[5, 1], [2, 4]], "label_names": ["cat", "dog"]},
        "blessed": True, "pushed": {"model_name": "digits", "version": 3, "path": "serving/digits/3"},
    }, "report.html")
"""
from __future__ import annotations

from pipeline.report.command import cli
from pipeline.report.render import render_report, validate_record
from pipeline.report.store import (
    list_run_ids,
    load_record,
    record_path,
    report_path,
    sanitize_run_id,
    save_record,
)

__all__ = [
    "cli",
    "list_run_ids",
    "load_record",
    "record_path",
    "render_report",
    "report_path",
    "sanitize_run_id",
    "save_record",
    "validate_record",
]
