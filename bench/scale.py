"""Scale-out overhead on one machine: 1 vs 2 Beam workers, 1 vs 2 training workers.

    .venv/bin/python bench/scale.py                      # 20,000 images (CIFAR-sized 32x32x3)
    .venv/bin/python bench/scale.py --images 2000 --epochs 1

1. Generates a CIFAR-sized image folder (`<root>/<split>/<label>/*.png`, 32x32 RGB) from
   scikit-learn's digits: each image is a digit upscaled, shifted, tinted and noised, so
   the folder has `--images` distinct images (80/10/10 train/validation/test).
2. Runs the default pipeline on it twice, Beam DirectRunner in_memory with 1 worker, then
   multi_processing with 2 workers, and reads each component's wall time from MLMD (it also
   counts the Beam SDK worker processes each run started: 0 in memory, >= 2 multi-process).
3. Trains on the first run's Transform output with `python -m pipeline train-workers`
   with 1 and with 2 workers (MultiWorkerMirroredStrategy over 127.0.0.1).
Writes bench/results/scale.json with the 1/5/15-minute load average before and after each
step. On a 2-core machine these numbers show correctness and overhead, not speed-up: two
worker processes share the same two cores (and whatever else runs on them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script: `pipeline` is imported from the repo
SPLITS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
BEAM = {1: ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        2: ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]}


def make_image_folder(root: str, n: int, seed: int = 0) -> dict:
    """`n` 32x32 RGB PNGs made from the digits; returns counts per split."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {}
    start = 0
    for split, share in SPLITS:
        k = int(round(n * share)) if split != "test" else n - start
        for i in range(k):
            j = rng.integers(len(digits.images))
            img = Image.fromarray((digits.images[j] * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
            canvas = np.zeros((32, 32), np.float32)
            dy, dx = rng.integers(0, 5, size=2)
            canvas[dy:dy + 28, dx:dx + 28] = np.asarray(img, np.float32)
            tint = rng.uniform(0.4, 1.0, size=3)
            rgb = np.clip(canvas[..., None] * tint + rng.normal(0, 8, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            folder = os.path.join(root, split, str(digits.target[j]))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(rgb).save(os.path.join(folder, f"{start + i:06d}.png"))
        counts[split], start = k, start + k
    return counts


def component_seconds(runs_dir: str, pipeline_name: str) -> dict:
    """Wall seconds per component of the newest run in the MLMD store (create -> last update)."""
    from pipeline.history import list_runs, open_store

    run = list_runs(os.path.join(runs_dir, "metadata.sqlite"), pipeline=pipeline_name, limit=1)[0]
    store = open_store(os.path.join(runs_dir, "metadata.sqlite"))
    context = store.get_context_by_type_and_name("pipeline_run", run.run_id)
    out = {}
    for e in store.get_executions_by_context(context.id):
        out[e.type.rsplit(".", 1)[-1]] = round((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000, 1)
    return out


def timed(cmd: list[str], log_path: str, timeout: float) -> dict:
    """Runs `cmd`; wall time, load average before/after, and the Beam SDK worker processes it started."""
    from bench.procs import beam_sdk_workers_under

    before = os.getloadavg()
    started = time.time()
    workers: set[int] = set()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None and time.time() - started < timeout:
            workers |= beam_sdk_workers_under(proc.pid)
            time.sleep(1.0)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
    return {"exit_code": code, "wall_s": round(time.time() - started, 1), "loadavg_before": before,
            "loadavg_after": os.getloadavg(), "beam_sdk_worker_processes": len(workers), "log": log_path}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", default=os.path.join(REPO, "runs", "bench_scale"))
    ap.add_argument("--output", default=os.path.join(REPO, "bench", "results", "scale.json"))
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per step")
    ap.add_argument("--resume", action="store_true", help="keep the steps already in --output and run the others")
    args = ap.parse_args()
    from components.train.keys import TRAIN_SUMMARY_FILE  # after sys.path has the repo
    os.makedirs(args.workdir, exist_ok=True)
    root = os.path.join(args.workdir, f"images_{args.images}")
    started = time.time()
    counts = make_image_folder(root, args.images) if not os.path.isdir(root) else "reused"
    result = {"images": args.images, "image_shape": [32, 32, 3], "splits": counts, "epochs": args.epochs,
              "generate_s": round(time.time() - started, 1), "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "note": "2 cores shared with other work: these show correctness and overhead, not speed-up", "beam": {}, "train": {}}
    with open(os.path.join(REPO, "configs", "digits_cnn.yaml")) as f:
        base = yaml.safe_load(f)
    if args.resume and os.path.exists(args.output):
        with open(args.output) as f:
            done = json.load(f)
        result["beam"], result["train"] = done.get("beam", {}), done.get("train", {})

    def save():  # after every step: a cut-short run still leaves its numbers
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)

    def beam_run(workers: int) -> str:
        path = os.path.join(args.workdir, f"beam{workers}.yaml")
        if str(workers) in result["beam"]:
            return path
        cfg = json.loads(json.dumps(base))
        cfg.update(pipeline_name=f"scale_beam{workers}", runs_dir=os.path.join(args.workdir, f"runs_beam{workers}"), beam_args=BEAM[workers])
        cfg["data"] = {"source": "image_folder", "root": root, "image_shape": [32, 32, 3],
                       "splits": {"train": "train", "eval": "validation", "test": "test"}}
        cfg["train"].update(epochs=args.epochs)
        cfg["evaluate"] = {"accuracy": {"lower_bound": 0.0}}  # timing run: the gate is not what is measured
        # A model load can take over the 60 s default while Beam workers or other work hold both cores.
        cfg["infra_validation"] = {**cfg.get("infra_validation", {}), "timeout_seconds": 600}
        cfg["push"]["model_name"] = f"scale_beam{workers}"
        path = os.path.join(args.workdir, f"beam{workers}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        step = timed([sys.executable, "-m", "pipeline", "run", "--config", path, "--quiet"],
                     os.path.join(args.workdir, f"beam{workers}.log"), args.timeout)
        step["components_s"] = component_seconds(cfg["runs_dir"], cfg["pipeline_name"]) if step["exit_code"] in (0, 3) else {}
        result["beam"][str(workers)] = step
        save()
        print(f"beam workers={workers}: {step['wall_s']} s, exit {step['exit_code']}, components {step['components_s']}", flush=True)
        return path

    def train_run(path: str, workers: int) -> None:
        if str(workers) in result["train"]:
            return
        out = os.path.join(args.workdir, f"train_workers{workers}")
        step = timed([sys.executable, "-m", "pipeline", "train-workers", "--config", path, "--workers", str(workers),
                      "--output", out, "--max-restarts", "0", "--timeout", str(args.timeout)],
                     os.path.join(args.workdir, f"train_workers{workers}.log"), args.timeout + 60)
        summary = os.path.join(out, "model_run", TRAIN_SUMMARY_FILE)
        if os.path.exists(summary):
            with open(summary) as f:
                s = json.load(f)
            step.update({k: s[k] for k in ("strategy", "total_steps", "batch_size", "steps_per_epoch")})
        result["train"][str(workers)] = step
        save()
        print(f"training workers={workers}: {step['wall_s']} s, exit {step['exit_code']}", flush=True)

    # The training comparison first (it needs only the first run's Transform output).
    path = beam_run(1)
    train_run(path, 1)
    train_run(path, 2)
    beam_run(2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
