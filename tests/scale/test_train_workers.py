"""Multi-worker training for real: `python -m pipeline train-workers --workers 2` starts two
processes with TF_CONFIG on 127.0.0.1 (MultiWorkerMirroredStrategy), each running TFX's
Trainer argument resolution and the project's run_fn on the Transform output of the
session's real pipeline run (fixture `pipeline_runs`). Worker 1 is SIGKILLed after the
chief's first checkpoint; the launcher restarts both, which resume from that checkpoint.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS, CHECKPOINT_EVERY = 6, 3


@pytest.fixture(scope="module")
def killed_and_resumed(pipeline_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_workers")
    cfg = json.loads(json.dumps(pipeline_runs["cfg"]))  # same runs_dir: its MLMD has the Transform output
    cfg["train"].update(epochs=EPOCHS, checkpoint_every_steps=CHECKPOINT_EVERY)
    config, out = tmp / "config.yaml", tmp / "out"
    config.write_text(yaml.safe_dump(cfg))
    ckpt_glob = os.path.join(cfg["runs_dir"], "checkpoints", cfg["pipeline_name"], "*", "ckpt-*.index")
    before = set(glob.glob(ckpt_glob))
    started = time.time()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "train-workers", "--config", str(config), "--workers", "2",
         "--output", str(out), "--max-restarts", "1", "--timeout", "900"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status = out / "workers.json"
    killed = None
    deadline = time.time() + 900
    while launcher.poll() is None and time.time() < deadline:
        new = set(glob.glob(ckpt_glob)) - before
        if new and status.exists():
            first = json.loads(status.read_text())["attempts"][0]
            killed = {"pid": first["pids"][1], "checkpoints": sorted(new)}
            os.killpg(killed["pid"], signal.SIGKILL)  # the worker is its own process group
            break
        time.sleep(0.1)
    output = launcher.communicate(timeout=max(1, deadline - time.time()))[0]
    return {"code": launcher.returncode, "output": output, "out": out, "killed": killed, "cfg": cfg,
            "ckpt_glob": ckpt_glob, "secs": time.time() - started,
            "attempts": json.loads(status.read_text())["attempts"] if status.exists() else []}


def _log(run, attempt, worker):
    with open(run["attempts"][attempt]["logs"][worker], errors="replace") as f:
        return f.read()


def test_two_workers_finish_with_identical_weights(killed_and_resumed):
    run = killed_and_resumed
    assert run["killed"], "no checkpoint appeared before training ended: nothing was killed\n" + run["output"][-3000:]
    assert run["code"] == 0, run["output"][-3000:]
    summary = json.loads((run["out"] / "train_workers_summary.json").read_text())
    assert summary["attempts"] == 2 and summary["identical_weights"] is True
    (w0, w1) = summary["final"]
    assert (w0["task"], w1["task"]) == ("worker:0", "worker:1")
    assert w0["sha256"] == w1["sha256"] and w0["step"] == w1["step"]
    chief = json.loads((run["out"] / "model_run" / "train_summary.json").read_text())
    assert chief["strategy"].startswith("MultiWorkerMirroredStrategy over 2 tasks")
    assert int(w0["step"]) == chief["final_step"] == chief["total_steps"] == EPOCHS * chief["steps_per_epoch"]
    assert chief["weights_sha256"] == w0["sha256"]
    assert chief["batch_size"] == 2 * run["cfg"]["train"]["batch_size"]  # global batch: per replica x 2 workers


def test_restarted_workers_resume_from_the_chiefs_checkpoint(killed_and_resumed):
    run = killed_and_resumed
    assert run["code"] == 0, run["output"][-3000:]
    killed_steps = {int(re.search(r"ckpt-(\d+)\.index$", p).group(1)) for p in run["killed"]["checkpoints"]}
    resumed = [re.findall(r"resuming from checkpoint at step (\d+)", _log(run, 1, w)) for w in (0, 1)]
    assert resumed[0] and resumed[0] == resumed[1], resumed  # both workers, same step: lockstep after the restart
    step = int(resumed[0][0])
    assert step >= min(killed_steps) and step % CHECKPOINT_EVERY == 0
    chief = json.loads((run["out"] / "model_run" / "train_summary.json").read_text())
    assert chief["resumed_from_step"] == step < chief["final_step"]


def test_only_the_chief_writes(killed_and_resumed):
    run = killed_and_resumed
    assert run["code"] == 0, run["output"][-3000:]
    out = run["out"]
    assert os.path.isfile(out / "model" / "Format-Serving" / "saved_model.pb")
    assert os.path.isfile(out / "model_run" / "model.keras")
    chief_pids = {a["pids"][0] for a in run["attempts"]}
    other_pids = {a["pids"][1] for a in run["attempts"]}
    events = glob.glob(str(out / "model_run" / "tensorboard" / "**" / "events.out.tfevents.*"), recursive=True)
    writers = {int(re.search(r"\.(\d+)\.\d+\.v2$", e).group(1)) for e in events}  # <time>.<host>.<pid>.<n>.v2
    assert events and writers <= chief_pids and not writers & other_pids, (writers, chief_pids, other_pids)
    assert "[train] task worker:1 final step" in _log(run, 1, 1)  # worker 1 trained to the end, writing elsewhere
    # the chief cleared the shared checkpoints at the end
    assert not [p for p in glob.glob(run["ckpt_glob"]) if p in run["killed"]["checkpoints"]]
