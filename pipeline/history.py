"""Run history from the TFX ML Metadata (MLMD) store: one row per pipeline run, newest first.

TFX records every component execution in MLMD and attributes it to three contexts: the
pipeline (type `pipeline`), the run (type `pipeline_run`, named by the run id) and the
node (type `node`, named `<pipeline>.<node id>`). A run's row is built from its
executions: start = earliest execution created, duration = until the latest update,
status from the execution states, blessed from the Evaluator's ModelBlessing output and
the pushed version from a PushedModel output.

    python -m pipeline runs                          # table of all runs
    python -m pipeline runs --pipeline digits_cnn --limit 5 --json

    for run in list_runs("runs/metadata.sqlite", pipeline="digits_cnn"):
        print(run.run_id, run.status, run.blessed, run.pushed_version)
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Sequence

from components.evaluate.keys import BLESSED_KEY
from components.push.keys import PUSHED_DESTINATION_KEY, PUSHED_KEY, PUSHED_VERSION_KEY
from pipeline.mlmd import DEFAULT_METADATA, State as _State
from pipeline.mlmd import StoreError as HistoryError  # noqa: F401  (the name callers catch)
from pipeline.mlmd import custom_property as _custom
from pipeline.mlmd import node_and_run, open_store, output_artifacts, pipeline_runs
from serving.cli_runner import run_cli
# CANCELED counts as failed: the run did not produce what it was started for.
_FAILED_STATES = {_State.FAILED, _State.CANCELED}
_UNFINISHED_STATES = {_State.NEW, _State.RUNNING}


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One pipeline run as recorded in MLMD.

    `blessed` is None when no Evaluator ran; `pushed` is None when no PushedModel was
    produced, False when the Pusher decided not to push.
    """

    run_id: str
    pipeline: str
    start_ms: int
    duration_s: float
    status: str  # "complete" | "running" | "failed"
    blessed: bool | None
    pushed: bool | None
    pushed_version: str | None
    pushed_destination: str | None
    executions: int
    failed_nodes: tuple[str, ...]

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_ms / 1000, dt.timezone.utc)

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["failed_nodes"] = list(self.failed_nodes)
        return {"run_id": self.run_id, "pipeline": self.pipeline,
                "start": self.start.isoformat(timespec="milliseconds"), **record}


def list_runs(metadata_path: str | Path = DEFAULT_METADATA, pipeline: str | None = None,
              limit: int | None = None) -> list[PipelineRun]:
    """Pipeline runs in the store, newest first, optionally of one pipeline and at most `limit`.

        runs = list_runs("runs/metadata.sqlite", pipeline="digits_cnn", limit=10)
    """
    store = open_store(metadata_path)
    runs = [_summarize(store, run_context, executions, name)
            for run_context, executions, name in pipeline_runs(store, pipeline, where=str(metadata_path))]
    runs.sort(key=lambda run: (run.start_ms, run.run_id), reverse=True)
    return runs[:limit] if limit is not None else runs


def _summarize(store, run_context, executions: Sequence, pipeline: str) -> PipelineRun:
    start = min(e.create_time_since_epoch for e in executions)
    end = max(e.last_update_time_since_epoch for e in executions)
    states = {e.last_known_state for e in executions}
    failed = [e for e in executions if e.last_known_state in _FAILED_STATES]
    status = "failed" if failed else ("running" if states & _UNFINISHED_STATES else "complete")
    outputs = output_artifacts(store, executions)
    evaluator_ids = {e.id for e in executions if "Evaluator" in e.type}
    blessings = [_custom(a, BLESSED_KEY) for execution_id, a in outputs
                 if execution_id in evaluator_ids and a.type == "ModelBlessing"]
    pushes = [a for _, a in outputs if a.type == "PushedModel"]
    pushed = [a for a in pushes if _custom(a, PUSHED_KEY) == 1]
    return PipelineRun(
        run_id=run_context.name,
        pipeline=pipeline,
        start_ms=start,
        duration_s=round((end - start) / 1000, 3),
        status=status,
        blessed=any(value == 1 for value in blessings) if blessings else None,
        pushed=bool(pushed) if pushes else None,
        pushed_version=_text(_custom(pushed[-1], PUSHED_VERSION_KEY)) if pushed else None,
        pushed_destination=_text(_custom(pushed[-1], PUSHED_DESTINATION_KEY)) if pushed else None,
        executions=len(executions),
        failed_nodes=tuple(sorted(_node_id(store, e) for e in failed)),
    )


def _node_id(store, execution) -> str:
    return node_and_run(store, execution)[0] or execution.type


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------- output


def format_table(runs: Sequence[PipelineRun]) -> str:
    """A fixed-width table: run id, pipeline, start (local time), duration, status, blessed, pushed."""
    header = ("RUN ID", "PIPELINE", "STARTED", "DURATION", "STATUS", "BLESSED", "PUSHED VERSION")
    rows = [header] + [(
        run.run_id,
        run.pipeline,
        run.start.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        _duration(run.duration_s),
        run.status + (f" ({', '.join(run.failed_nodes)})" if run.failed_nodes else ""),
        {True: "yes", False: "no", None: "-"}[run.blessed],
        run.pushed_version or ("not pushed" if run.pushed is False else "-"),
    ) for run in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def cli(argv: list[str]) -> int:
    """`python -m pipeline runs ...`: prints the run history; returns the exit code."""
    return run_cli(_parser(), argv, _list_runs_command, {HistoryError: 1})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline runs",
                                     description="List pipeline runs recorded in the ML Metadata store.")
    parser.add_argument("--pipeline", help="only runs of this pipeline")
    parser.add_argument("--metadata", default=DEFAULT_METADATA, help=f"SQLite MLMD store (default {DEFAULT_METADATA})")
    parser.add_argument("--json", action="store_true", help="print a JSON list (for tools) instead of a table")
    parser.add_argument("--limit", type=int, help="at most this many runs (the newest)")
    return parser


def _list_runs_command(args) -> int:
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    runs = list_runs(args.metadata, pipeline=args.pipeline, limit=args.limit)
    if args.json:
        print(json.dumps([run.to_json() for run in runs], indent=2))
    elif runs:
        print(format_table(runs))
    else:
        print(f"no runs yet in {args.metadata}: run `python -m pipeline run --config ...` first")
    return 0


if __name__ == "__main__":  # `python -m pipeline.history ...` works without the package's dispatcher
    sys.exit(cli(sys.argv[1:]))
