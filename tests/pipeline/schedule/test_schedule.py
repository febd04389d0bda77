"""Scheduled runs: real subprocess jobs, a real scheduler process, real flock(2) locks.

The jobs are small `python -c` scripts instead of `python -m pipeline run` (minutes per
run). Cron ticks come from `cron_fire_times` driven by a clock that jumps ahead when the
test is ready for the next tick, so no test waits for a wall-clock minute.
"""
import datetime as dt
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from croniter import croniter

from pipeline import schedule
from pipeline.schedule import (EXIT_SKIPPED, InvalidCronError, PipelineLocked, Scheduler, ScheduleError,
                               cron_fire_times, cron_to_on_calendar, parse_cron, pipeline_lock,
                               pipeline_name_for)

REPO = Path(__file__).resolve().parents[3]  # tests/pipeline/<package>/ -> repo
PIPELINE = "toy_pipe"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(f"pipeline_name: {PIPELINE}\nother_setting: 3\n")
    return path


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Lock and run directories in tmp; jobs can import this repo's `pipeline` package."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return {"lock_dir": tmp_path / "locks", "runs_dir": tmp_path / "runs"}


def job(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def log_events(dirs) -> list[dict]:
    path = dirs["runs_dir"] / PIPELINE / "scheduler.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def jumping_clock(jump_when):
    """Wall-clock time shifted to just before a minute boundary; +60 s once `jump_when()`.

    With cron "* * * * *" the first tick is due at once and the second exactly when the
    test's condition holds: a deterministic stand-in for waiting a minute.
    """
    offset = []  # fixed at the first call, which is where the scheduler asks for its first tick

    def clock():
        now = time.time()
        if not offset:
            offset.append(math.ceil(now / 60) * 60 - now - 0.3)
        return now + offset[0] + (60.0 if jump_when() else 0.0)
    return clock


def wait_for(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- names and lock


def test_pipeline_name_comes_from_yaml_else_file_stem(tmp_path, config):
    assert pipeline_name_for(config) == PIPELINE
    plain = tmp_path / "digits_cnn.yaml"
    plain.write_text("epochs: 3\n")
    assert pipeline_name_for(plain) == "digits_cnn"
    with pytest.raises(ScheduleError, match="does not exist"):
        pipeline_name_for(tmp_path / "missing.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("pipeline_name: ../../etc/passwd\n")
    with pytest.raises(ScheduleError, match="not usable as a file name"):
        pipeline_name_for(unsafe)


def test_pipeline_lock_is_exclusive_names_the_holder_and_is_released(tmp_path):
    with pipeline_lock(PIPELINE, tmp_path) as held:
        assert held.path == tmp_path / f"{PIPELINE}.lock"
        with pytest.raises(PipelineLocked, match=rf"previous run of {PIPELINE} still running \(pid {os.getpid()}\)"):
            with pipeline_lock(PIPELINE, tmp_path):
                pass
        with pipeline_lock("another_pipeline", tmp_path):  # other pipelines are independent
            pass
    with pipeline_lock(PIPELINE, tmp_path):  # released on exit
        pass


def test_lock_held_by_another_process_skips_once(config, dirs):
    holder = subprocess.Popen(job(
        "import sys, time; from pipeline.schedule import pipeline_lock\n"
        f"with pipeline_lock({PIPELINE!r}, {str(dirs['lock_dir'])!r}):\n"
        "    print('locked', flush=True); time.sleep(30)"), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = Scheduler(config, command=job("print('must not run')"), **dirs).run_once()
    finally:
        holder.kill()
        holder.wait()
    assert code == EXIT_SKIPPED
    [skipped] = log_events(dirs)
    assert skipped["event"] == "skipped" and skipped["holder_pid"] == holder.pid
    assert skipped["reason"] == f"previous run of {PIPELINE} still running (pid {holder.pid})"


def test_run_adopts_the_schedulers_lock_instead_of_deadlocking(config, dirs):
    # What `pipeline run` does when it takes the same lock: the inherited fd is adopted.
    code = Scheduler(config, **dirs, command=job(
        "import os; from pipeline.schedule import pipeline_lock\n"
        f"with pipeline_lock({PIPELINE!r}, {str(dirs['lock_dir'])!r}) as held:\n"
        "    assert held.fd == int(os.environ['PIPELINE_LOCK_FD'])\n")).run_once()
    assert code == 0
    assert [e["status"] for e in log_events(dirs)] == ["succeeded"]


# --------------------------------------------------------------------------- the scheduler loop


def test_overlapping_trigger_is_skipped_and_logged(config, dirs, tmp_path):
    started, log = tmp_path / "started", dirs["runs_dir"] / PIPELINE / "scheduler.jsonl"
    # The job runs until the scheduler has logged the second trigger as skipped.
    long_job = job(
        "import pathlib, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        "deadline = time.time() + 20\n"
        f"while '\"skipped\"' not in pathlib.Path({str(log)!r}).read_text() and time.time() < deadline:\n"
        "    time.sleep(0.05)\n")
    clock = jumping_clock(started.exists)
    scheduler = Scheduler(config, "* * * * *", command=long_job, clock=clock, **dirs,
                          fire_times=itertools.islice(cron_fire_times("* * * * *", clock), 2))
    t0 = time.monotonic()
    assert scheduler.serve() == 0
    assert time.monotonic() - t0 < 20
    events = log_events(dirs)
    assert [e["event"] for e in events] == ["scheduler_start", "skipped", "run", "scheduler_stop"]
    skipped, run = events[1], events[2]
    assert run["status"] == "succeeded" and run["exit_code"] == 0
    assert skipped["holder_pid"] == run["pid"]
    assert skipped["reason"] == f"previous run of {PIPELINE} still running (pid {run['pid']})"
    assert skipped["fire_time"] > run["fire_time"]


def test_failed_run_is_logged_and_the_next_tick_still_runs(config, dirs, tmp_path):
    log = dirs["runs_dir"] / PIPELINE / "scheduler.jsonl"
    counter = tmp_path / "count"
    # First run fails (exit 3); the second writes a summary like `pipeline run` does.
    flaky_job = job(
        "import json, pathlib, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "n = int(counter.read_text()) + 1 if counter.exists() else 1\n"
        "counter.write_text(str(n))\n"
        "if n == 1: sys.exit(3)\n"
        "json.dump({'blessed': True, 'pushed': {'version': 7, 'path': '/srv/7'}}, open(sys.argv[1], 'w'))\n")
    flaky_job.append("{summary_json}")
    clock = jumping_clock(lambda: log.exists() and '"event": "run"' in log.read_text())
    scheduler = Scheduler(config, "* * * * *", command=flaky_job, clock=clock, **dirs,
                          fire_times=itertools.islice(cron_fire_times("* * * * *", clock), 2))
    assert scheduler.serve() == 0
    runs = [e for e in log_events(dirs) if e["event"] == "run"]
    assert [(r["status"], r["exit_code"]) for r in runs] == [("failed", 3), ("succeeded", 0)]
    assert runs[0]["blessed"] is None and runs[0]["summary_json"] is None
    assert runs[1]["blessed"] is True and runs[1]["pushed_version"] == 7
    assert Path(runs[1]["summary_json"]).parent == dirs["runs_dir"] / PIPELINE
    assert runs[1]["duration_s"] >= 0 and runs[1]["end"] >= runs[1]["start"]
    assert Path(runs[0]["output_log"]).exists()


def test_cron_fire_times_follow_the_expression():
    base = dt.datetime(2026, 3, 2, 10, 7, 30).timestamp()  # a Monday
    times = list(itertools.islice(cron_fire_times("*/15 10 * * 1-5", clock=lambda: base), 3))
    assert [dt.datetime.fromtimestamp(t).strftime("%a %H:%M") for t in times] == \
        ["Mon 10:15", "Mon 10:30", "Mon 10:45"]


def start_scheduler(config, dirs, job_code, grace):
    argv = [sys.executable, "-m", "pipeline.schedule", "--config", str(config), "--cron", "* * * * *",
            "--run-now", "--grace-seconds", str(grace), "--lock-dir", str(dirs["lock_dir"]),
            "--runs-dir", str(dirs["runs_dir"]), "--command", f"{sys.executable} -c \"{job_code}\""]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("job_seconds, grace, status", [(1.0, 15, "succeeded"), (60, 0.5, "terminated")])
def test_sigterm_stops_the_scheduler_after_the_grace_period(config, dirs, tmp_path, job_seconds, grace, status):
    started = tmp_path / "started"
    process = start_scheduler(config, dirs, f"import pathlib, time; pathlib.Path('{started}').touch(); "
                                            f"time.sleep({job_seconds})", grace)
    try:
        wait_for(started.exists, what="the scheduled job to start")
        t0 = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=grace + 15) == 0
        elapsed = time.monotonic() - t0
    finally:
        process.kill()
        stderr = process.stderr.read()
    assert elapsed < grace + 5
    events = log_events(dirs)
    assert [e["event"] for e in events] == ["scheduler_start", "run", "scheduler_stop"]
    run, stop = events[1], events[2]
    assert run["status"] == status
    assert run["exit_code"] == (0 if status == "succeeded" else -signal.SIGTERM)
    assert stop["reason"] == "SIGTERM" and stop["runs"] == 1
    assert "scheduler stopped (SIGTERM)" in stderr
    with pytest.raises(ProcessLookupError):  # no orphaned job
        os.kill(run["pid"], 0)


# --------------------------------------------------------------------------- command line


def test_once_exits_with_the_runs_exit_code_and_logs_it(config, dirs, capsys):
    common = ["--config", str(config), "--once", "--lock-dir", str(dirs["lock_dir"]),
              "--runs-dir", str(dirs["runs_dir"])]
    assert schedule.cli(common + ["--command", f"{sys.executable} -c 'raise SystemExit(5)'"]) == 5
    assert schedule.cli(common + ["--command", f"{sys.executable} -c pass"]) == 0
    runs = log_events(dirs)
    assert [(r["event"], r["exit_code"]) for r in runs] == [("run", 5), ("run", 0)]
    assert "failed (exit 5)" in capsys.readouterr().err


@pytest.mark.parametrize("expression, problem", [
    ("0 2 * *", "4 field"),
    ("61 2 * * *", "minute value 61 is outside 0-59"),
    ("0 2 L * *", "non-standard extensions"),
    ("0 2 * * 1#2", "non-standard extensions"),
    ("5-1 * * * *", "runs backwards"),
    ("*/0 * * * *", "step /0"),
    ("@reboot", "@reboot is not a schedule"),
])
def test_invalid_cron_names_the_expression_and_a_valid_example(expression, problem):
    with pytest.raises(InvalidCronError) as error:
        parse_cron(expression)
    assert f"invalid cron expression {expression!r}" in str(error.value)
    assert problem in str(error.value)
    assert '"0 2 * * *"' in str(error.value)


def test_cli_invalid_cron_exits_2_with_the_message(config, capsys):
    assert schedule.cli(["--config", str(config), "--cron", "0 25 * * *"]) == 2
    err = capsys.readouterr().err
    assert "invalid cron expression '0 25 * * *'" in err and "hour value 25" in err and '"0 2 * * *"' in err
    assert schedule.cli(["--config", str(config)]) == 2  # neither --cron nor --once
    assert "--cron" in capsys.readouterr().err


def test_emit_crontab_line_uses_absolute_paths_and_flock(config, capsys):
    assert schedule.cli(["--config", str(config), "--cron", "30 2 * * 1-5", "--emit", "crontab"]) == 0
    comment, line = capsys.readouterr().out.strip().splitlines()
    assert comment.startswith("#")
    assert line.startswith("30 2 * * 1-5 cd ")
    python = os.path.abspath(sys.executable)
    assert f"cd {REPO} && " in line
    assert f"PIPELINE_LOCK_FD=9 {python} -m pipeline schedule --once --config {config.resolve()} " in line
    assert re.search(r"\S*flock -n 9 \|\|", line)
    assert f"9>>{Path('runs/locks').resolve()}/{PIPELINE}.lock" in line
    assert f">>{Path('runs/schedule').resolve()}/{PIPELINE}/cron.log 2>&1" in line


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) (util-linux) is not installed")
def test_crontab_command_skips_while_locked_and_hands_the_lock_to_the_run(config, dirs, tmp_path):
    run_took_lock = tmp_path / "run_took_lock"
    job_code = ("import pathlib; from pipeline.schedule import pipeline_lock; "
                f"lock = pipeline_lock({PIPELINE!r}, {str(dirs['lock_dir'])!r}); lock.__enter__(); "
                f"pathlib.Path({str(run_took_lock)!r}).touch()")
    line = schedule.crontab_line("* * * * *", config, command=job(job_code), **dirs).splitlines()[1]
    command = line.split(" ", 5)[5]  # what cron hands to /bin/sh
    if not _pipeline_dispatches("schedule"):  # until `python -m pipeline` knows `schedule`
        command = command.replace(" -m pipeline schedule ", " -m pipeline.schedule ")
    cron_log = dirs["runs_dir"] / PIPELINE / "cron.log"
    with pipeline_lock(PIPELINE, dirs["lock_dir"]):
        assert subprocess.run(["/bin/sh", "-c", command], timeout=60).returncode == 0
    assert f"skipped: previous run of {PIPELINE} still running (pid {os.getpid()})" in cron_log.read_text()
    assert not run_took_lock.exists()
    assert subprocess.run(["/bin/sh", "-c", command], timeout=60).returncode == 0
    assert run_took_lock.exists(), cron_log.read_text()
    assert [(e["event"], e["exit_code"]) for e in log_events(dirs)] == [("run", 0)]


def _pipeline_dispatches(command: str) -> bool:
    return subprocess.run([sys.executable, "-m", "pipeline", command, "--help"], cwd=REPO,
                          capture_output=True).returncode == 0


def test_emit_systemd_writes_hardened_oneshot_service_and_timer(config, tmp_path, capsys):
    out = tmp_path / "units"
    assert schedule.cli(["--config", str(config), "--cron", "0 2 1 * 1", "--emit", "systemd",
                         "--output-dir", str(out), "--grace-seconds", "30"]) == 0
    service = (out / f"tfx-pipeline-{PIPELINE}.service").read_text()
    timer = (out / f"tfx-pipeline-{PIPELINE}.timer").read_text()
    for setting in ["Type=oneshot", f"WorkingDirectory={REPO}", "User=CHANGE_ME", "NoNewPrivileges=yes",
                    "ProtectSystem=full", "PrivateTmp=yes", "KillMode=mixed"]:
        assert f"\n{setting}\n" in service, setting
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.M).group(1)
    assert exec_start.startswith(f"{os.path.abspath(sys.executable)} -m pipeline schedule --once ")
    assert f"--config {config.resolve()}" in exec_start and "--grace-seconds 30" in exec_start
    # cron ORs day-of-month and day-of-week; systemd ANDs, so two OnCalendar lines (a union).
    assert re.findall(r"^OnCalendar=(.*)$", timer, re.M) == ["*-*-01 02:00:00", "Mon *-*-* 02:00:00"]
    assert f"Unit=tfx-pipeline-{PIPELINE}.service" in timer and "WantedBy=timers.target" in timer
    if shutil.which("systemd-analyze"):  # systemd's own parser accepts both units
        verify = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, out.iterdir()))],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr
        assert "Unknown key" not in verify.stderr and "Failed to parse" not in verify.stderr, verify.stderr
    assert schedule.cli(["--config", str(config), "--cron", "0 2 * * *", "--emit", "systemd",
                         "--user", "root"]) == 2
    assert "non-root user" in capsys.readouterr().err


@pytest.mark.parametrize("expression, expected", [
    ("0 2 * * *", ["*-*-* 02:00:00"]),
    ("*/15 8-17 * * 1-5", ["Mon..Fri *-*-* 08..17:00/15:00"]),
    ("5-30/10 */6 * * *", ["*-*-* 00/6:05,15,25:00"]),
    ("0 0 1,15 */3 *", ["*-01/3-01,15 00:00:00"]),
    ("0 9 * * sat,sun", ["Sat,Sun *-*-* 09:00:00"]),
    ("0 12 * * 5-7", ["Fri..Sun *-*-* 12:00:00"]),
    ("0 2 1 * 1", ["*-*-01 02:00:00", "Mon *-*-* 02:00:00"]),
    ("@hourly", ["*-*-* *:00:00"]),
])
def test_on_calendar_translation_fires_when_cron_does(expression, expected):
    calendars = cron_to_on_calendar(expression)
    assert calendars == expected
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: checked the OnCalendar strings only")
    # systemd's own next elapses (union over the lines) must equal croniter's.
    elapses = sorted({t for calendar in calendars for t in _systemd_elapses(calendar, 12)})[:12]
    it = croniter(parse_cron(expression).expression, elapses[0] - dt.timedelta(seconds=1))
    assert elapses == [it.get_next(dt.datetime) for _ in range(12)]


def _systemd_elapses(calendar: str, n: int) -> list[dt.datetime]:
    out = subprocess.run(["systemd-analyze", "calendar", f"--iterations={n}", calendar], check=True,
                         capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}).stdout
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", out)
    assert len(stamps) == n, out
    return [dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") for stamp in stamps]


def test_cron_that_crond_and_croniter_read_differently_is_refused_for_emit():
    with pytest.raises(ScheduleError, match=r"1-31/2"):
        cron_to_on_calendar("0 2 */2 * 1")
