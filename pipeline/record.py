"""The run record: everything a person wants to see about one run, as plain JSON.

Built from the run summary and the artifacts it points at; rendered as the HTML run
report (pipeline/report) and kept at `<runs>/reports/<run id>/run_record.json`.

    record = build_record(summary, cfg)
    save_and_render(cfg["runs_dir"], record)   # -> path of report.html
"""
from __future__ import annotations

import os
import subprocess

from components.evaluate.keys import HELDOUT_REPORT_FILE
from components.train.keys import HISTORY_FILE
from pipeline.mlmd import read_json as _read_json
from pipeline.report import render_report, report_path, save_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"




def thresholds_table(summary: dict, evaluate: dict) -> list[dict]:
    """Every configured gate with its value and verdict (failures come from TFMA)."""
    failing = summary.get("failing_thresholds", [])
    rows = [
        {"metric": f"{f['metric']} ({f['slice']})", "value": f["value"], "bound": f["bound"], "direction": "change" if "change" in f["metric"] else ">=", "passed": False}
        for f in failing
    ]
    acc = summary["metrics"].get("eval_sparse_categorical_accuracy")
    if acc is not None and not any(f["metric"] == "sparse_categorical_accuracy" for f in failing):
        rows.insert(0, {"metric": "sparse_categorical_accuracy (overall, eval split)", "value": acc, "bound": evaluate["accuracy_lower_bound"], "direction": ">=", "passed": True})
    return rows


def build_record(summary: dict, cfg: dict) -> dict:
    model_run = summary.get("model_run_uri")
    history = _read_json(os.path.join(model_run, HISTORY_FILE)) if model_run else None
    train = summary.get("training") or {}
    test = _read_json(os.path.join(summary["test_report_uri"], HELDOUT_REPORT_FILE)) if summary.get("test_report_uri") else None
    failed = any(c["status"] == "failed" for c in summary["components"]) or summary.get("error")
    record = {
        "pipeline_name": summary["pipeline_name"],
        "run_id": summary["run_id"],
        "started_at": summary["run_id"],
        "duration_s": summary.get("duration_s"),
        "status": "failed" if failed else "succeeded",
        "config_path": cfg.get("_config_path"),
        "config_hash": cfg.get("_config_hash"),
        "git_commit": summary.get("git_commit") or git_commit(),
        "components": summary["components"],
        "blessed": summary["blessed"],
        "thresholds": thresholds_table(summary, cfg["evaluate"]),
        "pushed": summary.get("pushed") or summary.get("already_pushed"),
        "metrics": summary["metrics"],
        "error": summary.get("error"),
    }
    if history is not None:
        record["training"] = {
            "history": history, "model_name": train.get("model"),
            # what people tune: the model's hparams plus the training settings of the config
            "hparams": {**(train.get("hparams") or {}), **{k: v for k, v in cfg["train"].items() if k != "augmentation"},
                        "augmentation": ", ".join(cfg["train"]["augmentation"]) or "none"},
            "precision": train.get("precision"), "epochs": train.get("epochs"), "steps": train.get("final_step"),
        }
    if test is not None:
        record["test"] = test
    preview = os.path.join(model_run, "augmentation_preview.png") if model_run else None
    if preview and os.path.isfile(preview):
        record["augmentation_preview_png"] = preview
    for key in ("optimizer", "infra"):
        if summary.get(key):
            record[key] = summary[key]
    return record


def save_and_render(runs_dir: str, record: dict) -> str:
    save_record(runs_dir, record)
    return render_report(record, report_path(runs_dir, record["run_id"]))
