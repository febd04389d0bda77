"""Shared test setup: quiet TF, CPU only, TFX stack imported in the right order."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import glob  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

import components.tfx_compat  # noqa: E402,F401  (tfx.components before TFDV)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



@pytest.fixture(scope="module")
def default_config_path(tmp_path_factory) -> str:
    """configs/digits_cnn.yaml as a copy whose runs_dir is a fresh temporary folder (builds and compiles, no run)."""
    tmp = tmp_path_factory.mktemp("config")
    with open(os.path.join(REPO, "configs", "digits_cnn.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["runs_dir"] = str(tmp / "runs")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory):
    """The real default pipeline, run three times through the CLI (see tests/pipeline/test_e2e.py).

    Keys: cfg (dict), config (path), tmp, killed_at_steps, and for i in (2, 3): code{i},
    log{i}, secs{i}, summary{i} (the --summary-json dict), versions{i} (serving dirs).
    Other tests reuse its runs_dir (MLMD, artifacts, serving base) instead of running again.
    """
    tmp = tmp_path_factory.mktemp("e2e")
    with open(os.path.join(REPO, "configs", "digits_cnn.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["runs_dir"] = str(tmp / "runs")
    cfg["train"]["epochs"] = 12  # small, still well above the 0.95 bound
    cfg["train"]["checkpoint_every_steps"] = 5
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = {"cfg": cfg, "config": str(config), "tmp": tmp}

    # 1. kill mid-training
    proc = _cli(["run", "--config", str(config)], start_new_session=True)
    ckpt_glob = os.path.join(cfg["runs_dir"], "checkpoints", cfg["pipeline_name"], "*", "ckpt-*.index")
    deadline = time.time() + 600
    while not glob.glob(ckpt_glob) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert glob.glob(ckpt_glob), f"no checkpoint appeared; run output:\n{proc.communicate()[0][-3000:] if proc.poll() is not None else ''}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out["killed_at_steps"] = sorted(int(p.rsplit("ckpt-", 1)[1].split(".")[0]) for p in glob.glob(ckpt_glob))

    # 2. rerun: resumes, finishes, pushes; 3. rerun: all cached
    for i in (2, 3):
        summary_path = tmp / f"summary{i}.json"
        started = time.time()
        p = _cli(["run", "--config", str(config), "--summary-json", str(summary_path)])
        log = p.communicate(timeout=900)[0]
        out[f"code{i}"], out[f"log{i}"], out[f"secs{i}"] = p.returncode, log, time.time() - started
        out[f"summary{i}"] = json.loads(summary_path.read_text()) if summary_path.exists() else None
        out[f"versions{i}"] = sorted(os.listdir(os.path.join(cfg["runs_dir"], "serving", "digits")))
    return out


