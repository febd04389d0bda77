"""`python -m pipeline report RUN_ID [--runs-dir runs]`: re-render a run's HTML report.

Reads `<runs-dir>/reports/<safe run id>/run_record.json`, writes `report.html` next to
it and prints the report's path. RUN_ID may be the TFX run id or its folder name.

    cli(["2026-11-22T01:02:03.123456", "--runs-dir", "runs"])  # -> 0, prints the path
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from pipeline.report import store
from pipeline.report.render import render_report
from serving.cli_runner import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline report",
        description="Re-render the HTML report of a pipeline run from its run_record.json.",
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="TFX run id (or its folder name under <runs-dir>/reports/)")
    parser.add_argument(
        "--runs-dir", default="runs", help="folder holding reports/<run id>/run_record.json (default: runs)"
    )
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """Runs the `report` command; returns the process exit code (0 ok, 1 error, 2 usage)."""
    return run_cli(_parser(), argv, _report_command, {ValueError: 1})


def _report_command(args) -> int:
    record_file = store.record_path(args.runs_dir, args.run_id)  # ValueError for an unsafe run id
    if not os.path.isfile(record_file):
        print(f"error: no run record for run id {args.run_id!r} at {record_file}.", file=sys.stderr)
        available = store.list_run_ids(args.runs_dir)
        if available:
            listing = "\n".join(f"  {run_id}" for run_id in available)
            print(f"Available run ids in {args.runs_dir}:\n{listing}\nPass one of these, or --runs-dir for another "
                  "runs folder.", file=sys.stderr)
        else:
            print(f"No {store.REPORTS_DIR}/*/{store.RECORD_FILE} under {args.runs_dir}: run the pipeline first, or "
                  "pass --runs-dir for another runs folder.", file=sys.stderr)
        return 1
    try:
        record = store.load_record(record_file)
        out = render_report(record, store.report_path(args.runs_dir, args.run_id))
    except (OSError, ValueError, TypeError) as e:
        print(f"error: could not render the report from {record_file}: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0
