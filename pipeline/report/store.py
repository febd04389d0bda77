"""Where run records and reports live on disk, and how they are written.

Layout under the runs directory (one folder per run, named by the sanitised run id):

    <runs-dir>/reports/<safe run id>/run_record.json
    <runs-dir>/reports/<safe run id>/report.html

    record_path("runs", "2026-11-22T01:02:03.123456")
    # -> "runs/reports/2026-11-22T01_02_03.123456/run_record.json"
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from serving.atomic import atomic_write_text

REPORTS_DIR = "reports"
RECORD_FILE = "run_record.json"
REPORT_FILE = "report.html"
_MAX_RUN_ID_CHARS = 128
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_run_id(run_id: str) -> str:
    """Turns a run id into a folder name that is safe on every filesystem.

    Characters other than letters, digits, `.`, `_` and `-` become `_` (TFX run ids such
    as "2026-11-22T01:02:03.123456" contain `:`); leading `.`, `_` and `-` are dropped so
    the name can be neither hidden, `..`, nor read as a command-line option. The result
    is idempotent: sanitising a folder name returns it unchanged, so the CLI accepts
    either form.

    Example:

    >>> sanitize_run_id("2026-11-22T01:02:03.123456")
    '2026-11-22T01_02_03.123456'
    """
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a string, got {type(run_id).__name__}; pass the TFX run id as text")
    safe = _UNSAFE_RUN.sub("_", run_id.strip()).lstrip("._-")
    if not safe:
        raise ValueError(
            f"run id {run_id!r} has no letters or digits; pass a run id such as '2026-11-22T01:02:03.123456'"
        )
    if len(safe) > _MAX_RUN_ID_CHARS:
        raise ValueError(f"run id is {len(safe)} characters long; the limit is {_MAX_RUN_ID_CHARS}")
    return safe


def run_dir(runs_dir: str, run_id: str) -> str:
    """The folder that holds one run's record and report."""
    return os.path.join(runs_dir, REPORTS_DIR, sanitize_run_id(run_id))


def record_path(runs_dir: str, run_id: str) -> str:
    """Path of a run's `run_record.json`, e.g. `runs/reports/<safe run id>/run_record.json`."""
    return os.path.join(run_dir(runs_dir, run_id), RECORD_FILE)


def report_path(runs_dir: str, run_id: str) -> str:
    """Path of a run's `report.html`, next to its `run_record.json`."""
    return os.path.join(run_dir(runs_dir, run_id), REPORT_FILE)


def _json_default(value: Any) -> Any:
    # numpy arrays and scalars (Keras history, confusion matrices) -> plain Python values.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(
        f"run record value of type {type(value).__name__} is not JSON serialisable; "
        "convert it to a number, string, list or dict"
    )


def save_record(runs_dir: str, record: dict) -> str:
    """Writes `record` to `record_path(runs_dir, record["run_id"])` and returns that path.

    Example:

        path = save_record("runs", {"pipeline_name": "digits", "run_id": "2026-11-22T01:02:03"})
    """
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        raise ValueError("the run record must be a dict with a string 'run_id'; see pipeline.report for the schema")
    path = record_path(runs_dir, record["run_id"])
    return atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")


def load_record(path: str) -> dict:
    """Reads a run record JSON file, with an error that names the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-create it with pipeline.report.save_record") from e
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not an object; a run record is a JSON object")
    return record


def list_run_ids(runs_dir: str) -> list[str]:
    """Run ids that have a record under `<runs_dir>/reports/`, sorted by folder name.

    TFX run ids are timestamps, so this order is also oldest first.

    The id comes from the record's `run_id` field (the original, unsanitised form); the
    folder name is used when the record cannot be read.
    """
    base = os.path.join(runs_dir, REPORTS_DIR)
    if not os.path.isdir(base):
        return []
    ids = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name, RECORD_FILE)
        if not os.path.isfile(path):
            continue
        try:
            run_id = load_record(path).get("run_id")
        except (OSError, ValueError):
            run_id = None
        ids.append(run_id if isinstance(run_id, str) else name)
    return ids
