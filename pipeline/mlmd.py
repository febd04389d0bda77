"""The one reader of the TFX ML Metadata (MLMD) store: open it, find runs and their
executions, the artifacts an execution read and wrote, and artifact/execution properties.

`pipeline run` (its summary), `pipeline history` and `pipeline lineage` all read MLMD here.
Property keys come from the components that write them (e.g. components.push.keys.PUSHED_VERSION_KEY).

    store = open_store("runs/metadata.sqlite")                  # read-only, clear errors
    steps = run_executions(store, "digits_cnn", run_id)         # node id -> execution + artifacts
    custom_property(steps["Pusher"]["outputs"]["pushed_model"][0], PUSHED_VERSION_KEY)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

DEFAULT_METADATA = "runs/metadata.sqlite"
# Context types TFX's LocalDagRunner writes: one per pipeline, per run and per node ("<pipeline>.<node id>").
PIPELINE_CONTEXT, RUN_CONTEXT, NODE_CONTEXT = "pipeline", "pipeline_run", "node"

Event = metadata_store_pb2.Event
State = metadata_store_pb2.Execution.State
OUTPUT_EVENTS = (Event.OUTPUT, Event.DECLARED_OUTPUT)
INPUT_EVENTS = (Event.INPUT, Event.DECLARED_INPUT)


class StoreError(RuntimeError):
    """The ML Metadata store cannot be read; the message says why and what to do."""


# --------------------------------------------------------------------------- open


def open_store(metadata_path: str | Path = DEFAULT_METADATA) -> metadata_store.MetadataStore:
    """Opens an existing SQLite MLMD store read-only (never creates or migrates one)."""
    path = Path(metadata_path)
    if not path.is_file():
        raise StoreError(
            f"no runs yet: {path} does not exist. Run `python -m pipeline run --config "
            f"configs/<pipeline>.yaml` first, or pass --metadata path/to/metadata.sqlite"
        )
    try:
        return _connect(str(path), metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
    except Exception as error:  # MLMD raises bare RuntimeErrors from its C++ layer
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise StoreError(f"{path} is not a readable ML Metadata store ({reason}); "
                         "pass the metadata path from the pipeline's config with --metadata") from None


def open_or_create_store(metadata_path: str) -> metadata_store.MetadataStore:
    """The store the pipeline runner writes (created on first use)."""
    return _connect(metadata_path, metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)


def _connect(filename: str, mode) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = filename
    config.sqlite.connection_mode = mode
    return metadata_store.MetadataStore(config)


# --------------------------------------------------------------------------- runs and executions


def pipeline_runs(store, pipeline: str | None = None, where: str = "the store"
                  ) -> list[tuple[metadata_store_pb2.Context, list, str]]:
    """(run context, its executions, pipeline name) per run, optionally of one pipeline.

    Raises StoreError naming the known pipelines when `pipeline` is not in the store."""
    pipelines = store.get_contexts_by_type(PIPELINE_CONTEXT)
    if pipeline is not None:
        known = sorted(context.name for context in pipelines)
        pipelines = [context for context in pipelines if context.name == pipeline]
        if not pipelines:
            raise StoreError(f"no pipeline named {pipeline!r} in {where}; known pipelines: {', '.join(known) or 'none'}")
    pipeline_of = {execution.id: context.name
                   for context in pipelines for execution in store.get_executions_by_context(context.id)}
    runs = []
    for run_context in store.get_contexts_by_type(RUN_CONTEXT):
        executions = [e for e in store.get_executions_by_context(run_context.id) if e.id in pipeline_of]
        if executions:  # a run of another pipeline, or one that never started a node
            runs.append((run_context, executions, pipeline_of[executions[0].id]))
    return runs


def run_executions(store, pipeline_name: str, run_id: str) -> dict:
    """node id -> {"execution", "inputs": {key: [Artifact]}, "outputs": {key: [Artifact]}} for one run."""
    ctx = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if ctx is None:
        return {}
    result = {}
    for ex in store.get_executions_by_context(ctx.id):
        node_ctx = [c for c in store.get_contexts_by_execution(ex.id) if c.name.startswith(pipeline_name + ".")]
        if not node_ctx:
            continue
        inputs, outputs = execution_artifacts(store, ex.id)
        result[node_ctx[0].name[len(pipeline_name) + 1:]] = {"execution": ex, "inputs": inputs, "outputs": outputs}
    return result


def node_and_run(store, execution) -> tuple[str | None, str | None]:
    """(node id, run id) of an execution from its contexts; None where it has none."""
    node = run_id = None
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == NODE_CONTEXT:
            node = context.name.split(".", 1)[-1]  # "<pipeline>.<node id>"
        elif context.type == RUN_CONTEXT:
            run_id = context.name
    return node, run_id


# --------------------------------------------------------------------------- artifacts


def execution_artifacts(store, execution_id: int) -> tuple[dict[str, list], dict[str, list]]:
    """({input key: [Artifact]}, {output key: [Artifact]}) of one execution."""
    events = store.get_events_by_execution_ids([execution_id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
    inputs: dict[str, list] = {}
    outputs: dict[str, list] = {}
    for event in events:
        side = inputs if event.type in INPUT_EVENTS else outputs if event.type in OUTPUT_EVENTS else None
        if side is not None and event.artifact_id in artifacts:
            side.setdefault(event.path.steps[0].key if event.path.steps else "artifact", []).append(artifacts[event.artifact_id])
    return inputs, outputs


def output_artifacts(store, executions: Sequence) -> list[tuple[int, metadata_store_pb2.Artifact]]:
    """(execution id, artifact) for every output event of the executions."""
    events = [event for event in store.get_events_by_execution_ids([e.id for e in executions])
              if event.type in OUTPUT_EVENTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({event.artifact_id for event in events}))}
    return [(event.execution_id, artifacts[event.artifact_id]) for event in events
            if event.artifact_id in artifacts]


def producer(store, artifact_id: int):
    """The execution that really produced an artifact (not a later CACHED reuse), or None."""
    ids = {e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in OUTPUT_EVENTS}
    return _original(store.get_executions_by_id(list(ids))) if ids else None


def consumers(store, artifact_id: int, key: str) -> list:
    """Executions that read the artifact under input `key`."""
    ids = {e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
           if e.type in INPUT_EVENTS and e.path.steps and e.path.steps[0].key == key}
    return list(store.get_executions_by_id(list(ids))) if ids else []


def _original(executions: Iterable):
    # A later run that reused a step from the cache adds a CACHED execution with the same
    # output events; the execution that really ran is the first COMPLETE one.
    executions = list(executions)
    ran = [e for e in executions if e.last_known_state == State.COMPLETE] or executions
    return min(ran, key=lambda e: e.id) if ran else None


# --------------------------------------------------------------------------- properties


def custom_property(artifact, key: str, default=None):
    """The value of an MLMD artifact/execution/context custom property, or `default`."""
    if key not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def json_property(artifact_or_execution, key: str):
    """A custom property holding JSON, decoded; None when unset, the raw value when not JSON."""
    value = custom_property(artifact_or_execution, key)
    if value in (None, ""):
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def read_json(path: str):
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
