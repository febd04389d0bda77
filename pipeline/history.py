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

from pipeline.mlmd import custom_property as _custom
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from serving.cli_runner import run_cli

DEFAULT_METADATA = "runs/metadata.sqlite"
PIPELINE_CONTEXT, RUN_CONTEXT, NODE_CONTEXT = "pipeline", "pipeline_run", "node"

_State = metadata_store_pb2.Execution.State
# CANCELED counts as failed: the run did not produce what it was started for.
_FAILED_STATES = {_State.FAILED, _State.CANCELED}
_UNFINISHED_STATES = {_State.NEW, _State.RUNNING}


class HistoryError(RuntimeError):
    """The run history cannot be read; the message says why and what to do."""


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


def open_store(metadata_path: str | Path = DEFAULT_METADATA) -> metadata_store.MetadataStore:
    """Opens an existing SQLite MLMD store read-only (never creates or migrates one)."""
    path = Path(metadata_path)
    if not path.is_file():
        raise HistoryError(
            f"no runs yet: {path} does not exist. Run `python -m pipeline run --config "
            f"configs/<pipeline>.yaml` first, or pass --metadata path/to/metadata.sqlite"
        )
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        return metadata_store.MetadataStore(config)
    except Exception as error:  # MLMD raises bare RuntimeErrors from its C++ layer
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise HistoryError(f"{path} is not a readable ML Metadata store ({reason}); "
                           "pass the metadata path from the pipeline's config with --metadata") from None


def list_runs(metadata_path: str | Path = DEFAULT_METADATA, pipeline: str | None = None,
              limit: int | None = None) -> list[PipelineRun]:
    """Pipeline runs in the store, newest first, optionally of one pipeline and at most `limit`.

        runs = list_runs("runs/metadata.sqlite", pipeline="digits_cnn", limit=10)
    """
    store = open_store(metadata_path)
    pipelines = store.get_contexts_by_type(PIPELINE_CONTEXT)
    if pipeline is not None:
        known = sorted(context.name for context in pipelines)
        pipelines = [context for context in pipelines if context.name == pipeline]
        if not pipelines:
            raise HistoryError(f"no pipeline named {pipeline!r} in {metadata_path}; "
                               f"known pipelines: {', '.join(known) or 'none'}")
    pipeline_of = {execution.id: context.name
                   for context in pipelines for execution in store.get_executions_by_context(context.id)}
    runs = []
    for run_context in store.get_contexts_by_type(RUN_CONTEXT):
        executions = [e for e in store.get_executions_by_context(run_context.id) if e.id in pipeline_of]
        if executions:  # a run of another pipeline, or one that never started a node
            runs.append(_summarize(store, run_context, executions, pipeline_of[executions[0].id]))
    runs.sort(key=lambda run: (run.start_ms, run.run_id), reverse=True)
    return runs[:limit] if limit is not None else runs


def _summarize(store: metadata_store.MetadataStore, run_context: metadata_store_pb2.Context,
               executions: Sequence[metadata_store_pb2.Execution], pipeline: str) -> PipelineRun:
    start = min(e.create_time_since_epoch for e in executions)
    end = max(e.last_update_time_since_epoch for e in executions)
    states = {e.last_known_state for e in executions}
    failed = [e for e in executions if e.last_known_state in _FAILED_STATES]
    status = "failed" if failed else ("running" if states & _UNFINISHED_STATES else "complete")
    outputs = _output_artifacts(store, executions)
    evaluator_ids = {e.id for e in executions if "Evaluator" in e.type}
    blessings = [_custom(a, "blessed") for execution_id, a in outputs
                 if execution_id in evaluator_ids and a.type == "ModelBlessing"]
    pushes = [a for _, a in outputs if a.type == "PushedModel"]
    pushed = [a for a in pushes if _custom(a, "pushed") == 1]
    return PipelineRun(
        run_id=run_context.name,
        pipeline=pipeline,
        start_ms=start,
        duration_s=round((end - start) / 1000, 3),
        status=status,
        blessed=any(value == 1 for value in blessings) if blessings else None,
        pushed=bool(pushed) if pushes else None,
        pushed_version=_text(_custom(pushed[-1], "pushed_version")) if pushed else None,
        pushed_destination=_text(_custom(pushed[-1], "pushed_destination")) if pushed else None,
        executions=len(executions),
        failed_nodes=tuple(sorted(_node_id(store, e) for e in failed)),
    )


def _output_artifacts(store: metadata_store.MetadataStore, executions: Sequence[metadata_store_pb2.Execution]
                      ) -> list[tuple[int, metadata_store_pb2.Artifact]]:
    """(execution id, artifact) for every output event of the executions."""
    events = [event for event in store.get_events_by_execution_ids([e.id for e in executions])
              if event.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({event.artifact_id for event in events}))}
    return [(event.execution_id, artifacts[event.artifact_id]) for event in events
            if event.artifact_id in artifacts]


def _node_id(store: metadata_store.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == NODE_CONTEXT:
            return context.name.split(".", 1)[-1]  # "<pipeline>.<node id>"
    return execution.type




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
