"""Scheduled monitoring: run `python -m pipeline monitor` and, on drift, start a pipeline run.

The scheduler calls `monitor_tick` on its own cron (`--monitor-cron`). The monitor runs
as a subprocess (like pipeline runs: a crash or a leak never takes the scheduler down),
bounded by `timeout_seconds`. When it exits 1 (drift) and retraining is on
(`--retrain-on-drift`), `start_run()` is called: the scheduler's own trigger, which takes
the pipeline's no-overlap lock, so a drift found while a run is going is logged as
`skipped_locked` instead of starting a second run.

    outcome = monitor_tick("configs/digits_cnn.yaml", "runs/request_log", retrain_on_drift=True,
                           start_run=lambda: scheduler.run_once() != EXIT_SKIPPED,
                           report_dir="runs/schedule/digits_cnn/monitor/20260101T020000Z")
    outcome.status, outcome.retrain        # "drift", "started"
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from pipeline.mlmd import read_json

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_SECONDS = 1800.0
_STATUS_BY_CODE = {0: "no_drift", 1: "drift", 2: "usage_error"}


@dataclasses.dataclass
class MonitorOutcome:
    exit_code: int | None  # None: timed out or could not start
    status: str  # no_drift | insufficient_traffic | drift | usage_error | failed | timeout
    retrain: str  # started | skipped_locked | not_requested | none
    drifted_features: list[str]
    report_json: str | None
    output_tail: str

    def to_log(self) -> dict:
        return dataclasses.asdict(self)


def monitor_tick(config: str | os.PathLike, request_log: str | os.PathLike, *, retrain_on_drift: bool,
                 start_run: Callable[[], bool] | None, report_dir: str | os.PathLike, since: str | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, command: Sequence[str] | None = None) -> MonitorOutcome:
    """Runs the monitor once; on drift with `retrain_on_drift`, calls `start_run()` (True = a run started).

    `command` replaces `python -m pipeline monitor` (tests); `--config`, `--request-log`,
    `--report-dir` and `--since` are appended either way.
    """
    argv = list(command or [sys.executable, "-m", "pipeline", "monitor"])
    argv += ["--config", str(config), "--request-log", str(request_log), "--report-dir", str(report_dir)]
    if since:
        argv += ["--since", since]
    report_json = os.path.join(str(report_dir), "report.json")
    try:
        done = subprocess.run(argv, cwd=REPO_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout_seconds)
    except subprocess.TimeoutExpired as expired:
        tail = (expired.output or "") if isinstance(expired.output, str) else (expired.output or b"").decode(errors="replace")
        return MonitorOutcome(None, "timeout", "none", [], None, f"monitor did not finish within {timeout_seconds:g} s\n{tail[-2000:]}")
    except OSError as error:
        return MonitorOutcome(None, "failed", "none", [], None, f"could not start {argv[0]}: {error}")
    report = read_json(report_json) if done.returncode in (0, 1) else None
    status = (report or {}).get("status") or _STATUS_BY_CODE.get(done.returncode, "failed")
    drifted = list((report or {}).get("drifted_features") or [])
    retrain = "none"
    if done.returncode == 1:
        if not retrain_on_drift or start_run is None:
            retrain = "not_requested"
        else:
            retrain = "started" if start_run() else "skipped_locked"
    return MonitorOutcome(done.returncode, status, retrain, drifted, report_json if report is not None else None,
                          done.stdout[-2000:])

