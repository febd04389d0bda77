"""The scheduler's monitor hook (pipeline/monitor/schedule_hook.py): a real subprocess
"monitor" (a small script with the monitor's exit codes and report.json) and a real
Scheduler with a fake job and real flock(2) locks, so drift starts exactly one run and a
run in progress is never overlapped. The real monitor is exercised end to end in
tests/pipeline/monitor/test_monitor.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.monitor.schedule_hook import monitor_tick
from pipeline.schedule import EXIT_SKIPPED, Scheduler

REPO = Path(__file__).resolve().parents[3]  # tests/pipeline/<package>/ -> repo
PIPELINE = "toy_monitor_pipe"
FAKE_MONITOR = """
import argparse, json, os, sys, time
ap = argparse.ArgumentParser(); ap.add_argument("code", type=int); ap.add_argument("--sleep", type=float, default=0)
for flag in ("--config", "--request-log", "--report-dir", "--since"): ap.add_argument(flag)
args = ap.parse_args()
time.sleep(args.sleep)
if args.code in (0, 1):
    os.makedirs(args.report_dir, exist_ok=True)
    status = {0: "no_drift", 1: "drift"}[args.code]
    json.dump({"status": status, "drifted_features": ["intensity_c0"] if args.code else [], "since": args.since},
              open(os.path.join(args.report_dir, "report.json"), "w"))
print("fake monitor", args.code, args.request_log)
sys.exit(args.code)
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    config = tmp_path / "toy.yaml"
    config.write_text(f"pipeline_name: {PIPELINE}\n")
    fake = tmp_path / "fake_monitor.py"
    fake.write_text(FAKE_MONITOR)
    marker = tmp_path / "runs_started"
    scheduler = Scheduler(config, lock_dir=tmp_path / "locks", runs_dir=tmp_path / "runs",
                          command=[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('run\\n')"])
    return {"config": config, "fake": fake, "marker": marker, "scheduler": scheduler, "tmp": tmp_path}


def _tick(setup, code, *, retrain=True, **kwargs):
    return monitor_tick(setup["config"], setup["tmp"] / "log", retrain_on_drift=retrain,
                        start_run=lambda: setup["scheduler"].run_once() != EXIT_SKIPPED,
                        report_dir=setup["tmp"] / "report", command=[sys.executable, str(setup["fake"]), str(code)], **kwargs)


def _runs(setup) -> int:
    return setup["marker"].read_text().count("run") if setup["marker"].exists() else 0


def test_drift_starts_one_pipeline_run(setup):
    outcome = _tick(setup, 1, since="24h")
    assert (outcome.exit_code, outcome.status, outcome.retrain) == (1, "drift", "started")
    assert outcome.drifted_features == ["intensity_c0"] and _runs(setup) == 1
    assert json.loads(Path(outcome.report_json).read_text())["since"] == "24h"
    assert "fake monitor 1" in outcome.output_tail


@pytest.mark.parametrize("code, status", [(0, "no_drift"), (2, "usage_error"), (3, "failed")])
def test_no_drift_or_a_failed_monitor_starts_nothing(setup, code, status):
    outcome = _tick(setup, code)
    assert (outcome.exit_code, outcome.status, outcome.retrain) == (code, status, "none")
    assert _runs(setup) == 0


def test_drift_without_the_flag_only_reports(setup):
    outcome = _tick(setup, 1, retrain=False)
    assert (outcome.status, outcome.retrain) == ("drift", "not_requested") and _runs(setup) == 0


def test_drift_while_a_run_holds_the_lock_is_skipped(setup):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time; from pipeline.schedule import pipeline_lock\n"
                               f"with pipeline_lock({PIPELINE!r}, {str(setup['tmp'] / 'locks')!r}):\n"
                               "    print('locked', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        outcome = _tick(setup, 1)
    finally:
        holder.kill()
        holder.wait()
    assert (outcome.status, outcome.retrain) == ("drift", "skipped_locked") and _runs(setup) == 0


def test_a_hung_monitor_times_out(setup):
    outcome = monitor_tick(setup["config"], setup["tmp"] / "log", retrain_on_drift=True, start_run=lambda: True,
                           report_dir=setup["tmp"] / "report", timeout_seconds=1.0,
                           command=[sys.executable, str(setup["fake"]), "1", "--sleep", "20"])
    assert (outcome.exit_code, outcome.status, outcome.retrain) == (None, "timeout", "none")


@pytest.mark.parametrize("code, runs", [(1, 1), (0, 0)])
def test_the_scheduler_runs_the_monitor_on_its_own_cron_and_retrains_on_drift(setup, code, runs):
    """`python -m pipeline schedule --monitor-cron ... --request-log ... --retrain-on-drift`:
    a monitor tick that finds drift starts one pipeline run through the scheduler's lock."""
    import time

    from pipeline.schedule import MonitorSchedule

    tmp = setup["tmp"]
    monitor = MonitorSchedule(str(tmp / "log"), retrain_on_drift=True, fire_times=[time.time()],
                              command=[sys.executable, str(setup["fake"]), str(code)])
    scheduler = Scheduler(setup["config"], lock_dir=tmp / "locks", runs_dir=tmp / "runs", monitor=monitor,
                          command=[sys.executable, "-c", f"open({str(setup['marker'])!r}, 'a').write('run\\n')"])
    assert scheduler.serve() == 0
    events = [json.loads(line) for line in scheduler.log_file.read_text().splitlines()]
    ticks = [e for e in events if e["event"] == "monitor"]
    assert len(ticks) == 1 and ticks[0]["status"] == ("drift" if code else "no_drift")
    assert ticks[0]["retrain"] == ("started" if code else "none")
    assert _runs(setup) == runs
    assert [e["event"] for e in events].count("run") == runs


def test_schedule_cli_refuses_a_monitor_cron_without_a_request_log(setup, capsys):
    from pipeline.schedule import cli

    assert cli(["--config", str(setup["config"]), "--monitor-cron", "0 * * * *"]) == 2
    assert "--monitor-cron and --request-log go together" in capsys.readouterr().err
