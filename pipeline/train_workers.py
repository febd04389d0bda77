"""`python -m pipeline train-workers`: the Trainer's `run_fn` on N worker processes.

    python -m pipeline train-workers --config configs/digits_cnn.yaml --workers 2

Takes the newest Transform output of the config's pipeline from its MLMD store (run the
pipeline once first), starts N processes on 127.0.0.1, each with its own `TF_CONFIG`, and
in each one resolves the Trainer's arguments with TFX's own `GenericExecutor` and calls the
project's `run_fn` (which then picks `MultiWorkerMirroredStrategy`). This is what a Vertex AI
custom job or a Kubeflow TFJob does with one replica per worker; see docs/scale.md.

Only the chief (worker 0) writes the model, the model run and the checkpoints; the others
write into throwaway directories. If a worker dies, the others cannot go on (their
collective ops fail), so the launcher stops them and restarts all workers, which resume
from the chief's checkpoint, at most `--max-restarts` times (a TFJob's `restartPolicy`).
Exit codes: 0 trained and all workers agree on the weights, 1 training failed or the
workers disagree, 2 usage/config error (no Transform output yet, bad flags).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The line each worker prints at the end (components/train/trainer.py:report_final_weights).
FINAL_LINE = re.compile(r"^\[train\] task (\S+) final step (\d+) weights sha256 ([0-9a-f]{64})$", re.M)
SPEC_FILE, STATUS_FILE = "worker_spec.json", "workers.json"


class LaunchError(RuntimeError):
    """A usage problem; the message names it and the fix."""


# --------------------------------------------------------------------------- inputs from MLMD


def latest_transform_inputs(metadata_path: str, pipeline_name: str) -> dict:
    """The Trainer's inputs (examples, transform_graph, schema) of the newest Transform run,
    as TFX artifacts keyed like the Trainer's input dict."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types import artifact_utils

    from pipeline.mlmd import PIPELINE_CONTEXT, StoreError, execution_artifacts, open_store

    try:
        store = open_store(metadata_path)
    except StoreError as e:
        raise LaunchError(str(e)) from None
    context = store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    runs = [e for e in (store.get_executions_by_context(context.id) if context else [])
            if e.type.endswith(".Transform") and e.last_known_state in done]
    if not runs:
        raise LaunchError(f"no finished Transform of pipeline '{pipeline_name}' in {metadata_path}; "
                          f"run `python -m pipeline run --config <config>` first")
    newest = max(runs, key=lambda e: e.id)
    inputs, outputs = execution_artifacts(store, newest.id)
    wanted = {"examples": outputs.get("transformed_examples"), "transform_graph": outputs.get("transform_graph"),
              "schema": inputs.get("schema")}
    if not all(wanted.values()):
        raise LaunchError(f"Transform execution {newest.id} lacks {[k for k, v in wanted.items() if not v]}")
    types = {t.id: t for t in store.get_artifact_types_by_id(list({a.type_id for arts in wanted.values() for a in arts}))}
    return {key: [artifact_utils.deserialize_artifact(types[a.type_id], a) for a in arts] for key, arts in wanted.items()}


def trainer_exec_properties(cfg: dict) -> dict:
    """The Trainer's execution properties exactly as the pipeline builds them (one home: build.py)."""
    from pipeline.build import build_pipeline

    trainer = next(c for c in build_pipeline(cfg).components if c.id == "Trainer")
    return dict(trainer.exec_properties)


def write_spec(cfg: dict, output_dir: str) -> str:
    """The executor invocation every worker runs (TFX's run_executor format: JSON artifact dicts)."""
    from tfx.types import artifact_utils, standard_artifacts

    from pipeline.build import paths

    inputs = latest_transform_inputs(paths(cfg)["metadata"], cfg["pipeline_name"])
    outputs = {}
    for key, artifact in (("model", standard_artifacts.Model()), ("model_run", standard_artifacts.ModelRun())):
        artifact.uri = os.path.join(output_dir, key)
        outputs[key] = [artifact]
    spec = {
        "inputs": artifact_utils.jsonify_artifact_dict(inputs),
        "outputs": artifact_utils.jsonify_artifact_dict(outputs),
        "exec_properties": trainer_exec_properties(cfg),
    }
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, SPEC_FILE)
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)
    return path


# --------------------------------------------------------------------------- one worker


def run_worker(spec_path: str) -> int:
    """One worker process: TFX's Trainer argument resolution, then `run_fn` (TF_CONFIG from env)."""
    import components.tfx_compat  # noqa: F401  (tfx.components before TFDV)
    from tfx.components.trainer.executor import GenericExecutor
    from tfx.components.util import udf_utils
    from tfx.types import artifact_utils
    import tensorflow as tf

    from components.train.trainer import is_chief_task

    with open(spec_path) as f:
        spec = json.load(f)
    inputs, outputs = (artifact_utils.parse_artifact_dict(spec[k]) for k in ("inputs", "outputs"))
    props = spec["exec_properties"]
    chief = is_chief_task(tf.distribute.cluster_resolver.TFConfigClusterResolver())
    if chief:  # TFX's own executor, including its check that run_fn exported a model
        GenericExecutor().Do(inputs, outputs, props)
    else:  # same arguments; the export went to a throwaway directory, so skip TFX's check
        udf_utils.get_fn(props, "run_fn")(GenericExecutor()._GetFnArgs(inputs, outputs, props))
    return 0


# --------------------------------------------------------------------------- the launcher


def free_ports(n: int) -> list[int]:
    """`n` free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def _start(spec_path: str, ports: list[int], index: int, log_path: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CONFIG=tf_config(ports, index), PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "pipeline.train_workers", "worker", spec_path],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def launch(spec_path: str, workers: int, *, max_restarts: int, timeout: float, poll: float = 0.5) -> dict:
    """Run `workers` processes until all exit 0; on a failure stop all and restart them all.

    Returns {"ok", "attempts", "logs" (of the last attempt), "codes"}. Writes workers.json
    ({"attempts": [{attempt, pids, ports, logs}, ...]}) beside the spec on every start.
    """
    out_dir = os.path.dirname(spec_path)
    os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
    deadline, history = time.monotonic() + timeout, []
    for attempt in range(max_restarts + 1):
        ports = free_ports(workers)
        logs = [os.path.join(out_dir, "logs", f"worker-{i}.attempt-{attempt}.log") for i in range(workers)]
        procs = [_start(spec_path, ports, i, logs[i]) for i in range(workers)]
        history.append({"attempt": attempt, "pids": [p.pid for p in procs], "ports": ports, "logs": logs})
        _write_json(os.path.join(out_dir, STATUS_FILE), {"attempts": history})
        print(f"[train-workers] attempt {attempt}: {workers} workers on 127.0.0.1 ports {ports} (pids {[p.pid for p in procs]})", flush=True)
        try:
            while time.monotonic() < deadline:
                codes = [p.poll() for p in procs]
                if any(c not in (None, 0) for c in codes) or all(c == 0 for c in codes):
                    break
                time.sleep(poll)
        except BaseException:  # Ctrl-C or SIGTERM (see cli): leave no worker behind
            _stop(procs)
            raise
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return {"ok": True, "attempts": attempt + 1, "logs": logs, "codes": codes}
        _stop(procs)
        failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
        if time.monotonic() >= deadline:
            print(f"[train-workers] timed out after {timeout:.0f} s; stopped all workers", flush=True)
            return {"ok": False, "attempts": attempt + 1, "logs": logs, "codes": [p.returncode for p in procs]}
        print(f"[train-workers] worker(s) {failed} exited with {[codes[i] for i in failed]}; stopped the others "
              f"(see {logs[failed[0]]})", flush=True)
    return {"ok": False, "attempts": max_restarts + 1, "logs": logs, "codes": [p.returncode for p in procs]}


def final_weights(logs: list[str]) -> list[dict]:
    """Each worker's last "[train] task ... final step ... weights sha256 ..." line."""
    found = []
    for path in logs:
        with open(path, errors="replace") as f:
            matches = FINAL_LINE.findall(f.read())
        found.append(dict(zip(("task", "step", "sha256"), matches[-1])) if matches else None)
    return found


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline train-workers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the pipeline's YAML config (its MLMD store has the Transform output)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes on this machine (default 2)")
    ap.add_argument("--output", help="where the chief writes model/ and model_run/ (default <runs_dir>/train_workers/<pipeline>/<UTC time>)")
    ap.add_argument("--max-restarts", type=int, default=2, help="restarts of all workers after one fails (default 2)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the whole training, restarts included")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.max_restarts < 0 or args.timeout <= 0:
        print("error: --workers must be >= 1, --max-restarts >= 0 and --timeout > 0", file=sys.stderr)
        return 2
    from pipeline.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        output = os.path.abspath(args.output or os.path.join(
            cfg["runs_dir"], "train_workers", cfg["pipeline_name"], dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")))
        import components.tfx_compat  # noqa: F401

        spec = write_spec(cfg, output)
    except (ConfigError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # -> launch() stops the workers
    result = launch(spec, args.workers, max_restarts=args.max_restarts, timeout=args.timeout)
    weights = final_weights(result["logs"]) if result["ok"] else []
    summary = {**result, "output": output, "workers": args.workers, "final": weights}
    agree = result["ok"] and None not in weights and len({(w["step"], w["sha256"]) for w in weights}) == 1
    summary["identical_weights"] = agree
    _write_json(os.path.join(output, "train_workers_summary.json"), summary)
    if not result["ok"]:
        print(f"error: training failed after {result['attempts']} attempt(s); worker logs: {result['logs']}", file=sys.stderr)
        return 1
    if not agree:
        print(f"error: the workers ended with different weights or steps: {weights}", file=sys.stderr)
        return 1
    print(f"[train-workers] done: {args.workers} workers, step {weights[0]['step']}, identical weights "
          f"(sha256 {weights[0]['sha256'][:16]}...); model in {output}/model, model run in {output}/model_run")
    return 0


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def _worker_main(spec_path: str) -> None:
    """Exit right after the work: a process holding MultiWorkerMirroredStrategy's collective
    runtime can hang at interpreter exit (after an error, it always did here), and the launcher
    must see the exit code to restart the workers."""
    code = 1
    try:
        code = run_worker(spec_path)
    except BaseException:  # noqa: BLE001  the traceback goes to the worker's log
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # a worker process: python -m pipeline.train_workers worker SPEC
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2])
    sys.exit(cli(sys.argv[1:]))
