"""Run record -> HTML file: validation of the required fields and the atomic write.

The record's schema is documented in `pipeline.report` (the package docstring).

    render_report({"pipeline_name": "digits", "run_id": "r1"}, "/tmp/r1.html")
"""
from __future__ import annotations

import os

from pipeline.report.sections import build_html
from serving.atomic import atomic_write_text


def validate_record(record) -> None:
    """Checks the two required fields; raises ValueError naming what is missing and the fix."""
    if not isinstance(record, dict):
        raise ValueError(
            f"the run record must be a dict, got {type(record).__name__}; see pipeline.report for the schema"
        )
    for key, example in (("pipeline_name", "digits"), ("run_id", "2026-11-22T01:02:03.123456")):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"the run record needs '{key}' as a non-empty string (got {value!r}); "
                f"add it, e.g. {key}={example!r} (schema: pipeline.report docstring)"
            )


def render_report(record: dict, out_path: str) -> str:
    """Writes the HTML report of one run to `out_path` (atomically) and returns the path.

    Args:
        record: the run record (schema in the `pipeline.report` docstring).
        out_path: where to write the page, e.g. `report_path("runs", run_id)`; folders
            are created. A relative `augmentation_preview_png` is looked up next to it.

    Returns:
        `out_path`.

    Example:

        path = render_report({"pipeline_name": "digits", "run_id": "r1"}, "/tmp/r1.html")
    """
    validate_record(record)
    page = build_html(record, base_dir=os.path.dirname(os.path.abspath(out_path)))
    return atomic_write_text(out_path, page)
