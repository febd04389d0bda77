"""The scheduler loop: triggers `python -m pipeline run` on a cron schedule, one run at a time.

Each trigger starts the run as a subprocess (its own session), so a run that crashes or leaks
memory never takes the scheduler down; a trigger that finds the pipeline's lock taken is
skipped and logged; every run's outcome is one JSON line in the log file.

    Scheduler("configs/digits_cnn.yaml", "0 2 * * *").serve()  # until SIGTERM
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from pipeline.lock import (DEFAULT_LOCK_DIR, LOCK_FD_ENV, HeldLock, InvalidPipelineName, PipelineLocked,
                           pipeline_lock, validate_pipeline_name, write_holder_pid)
from pipeline.schedule.cron import ScheduleError, cron_fire_times, parse_cron

DEFAULT_RUNS_DIR = "runs/schedule"
DEFAULT_GRACE_SECONDS = 60.0
# A child that ignores SIGTERM this long after the grace period gets SIGKILL.
KILL_AFTER_SECONDS = 10.0
# `--once` found the pipeline locked: no run happened (sysexits.h EX_TEMPFAIL, "try again later").
EXIT_SKIPPED = 75
EXIT_NOT_STARTED = 127  # the run's command could not be started (the shell's "command not found")
REPO_DIR = Path(__file__).resolve().parents[2]


def pipeline_name_for(config_path: str | os.PathLike) -> str:
    """The pipeline's name: the config YAML's `pipeline_name` key, else the file's stem.

        pipeline_name_for("configs/digits_cnn.yaml")  # -> "digits_cnn" unless the YAML names it
    """
    path = Path(config_path)
    if not path.is_file():
        raise ScheduleError(f"config {path} does not exist: pass --config path/to/pipeline.yaml")
    from pipeline.config import read_yaml_file  # one reader: bad YAML, non-UTF-8, unreadable

    data = read_yaml_file(str(path), "config", "configs/digits_cnn.yaml", error=ScheduleError)
    name = data.get("pipeline_name") if isinstance(data, dict) else None
    try:
        return validate_pipeline_name(str(name) if name else path.stem)
    except InvalidPipelineName as error:
        raise ScheduleError(str(error)) from None


@dataclasses.dataclass
class _ActiveRun:
    process: subprocess.Popen
    locks: contextlib.ExitStack
    run_id: str
    fire_time: float
    started: float
    summary_json: Path
    output_log: Path
    terminated: bool = False


@dataclasses.dataclass
class MonitorSchedule:
    """Scheduled drift checks (`--monitor-cron`): `python -m pipeline monitor` on its own cron;
    on drift with `retrain_on_drift`, the scheduler's own trigger starts a run (same lock).

    `fire_times` replaces the cron (tests); `command` replaces the monitor command (tests)."""

    request_log: str
    cron: str | None = None
    retrain_on_drift: bool = False
    since: str | None = None
    fire_times: Iterable[float] | None = None
    command: Sequence[str] | None = None

    def fire_times_from(self, clock: Callable[[], float]) -> Iterator[float]:
        if self.fire_times is not None:
            return iter(self.fire_times)
        if self.cron is None:
            raise ScheduleError('--request-log needs --monitor-cron "0 * * * *" (when to check for drift)')
        return cron_fire_times(self.cron, clock)


class Scheduler:
    """Triggers pipeline runs on a cron schedule, one at a time per pipeline.

    Args:
        config: the pipeline's YAML config (its `pipeline_name`, else its stem, names the lock).
        cron: cron expression; ignored when `fire_times` is given or for `run_once()`.
        lock_dir: where `<pipeline>.lock` lives.
        runs_dir: each run writes `<runs_dir>/<pipeline>/<run id>.json` (the run's summary)
            and `<run id>.log` (its stdout and stderr).
        log_file: JSON lines, one per run, skip, start and stop
            (default `<runs_dir>/<pipeline>/scheduler.jsonl`).
        grace_seconds: after SIGTERM/SIGINT, how long a run in progress may go on before it
            is terminated.
        command: the run's argv instead of `python -m pipeline run ...`; `{config}` and
            `{summary_json}` in it are filled in (tests use a small fake job).
        fire_times: epoch seconds to trigger at instead of the cron schedule; the scheduler
            stops after the last one (tests use it to avoid waiting for minutes).
        clock: returns epoch seconds (tests can inject one).

        Scheduler("configs/digits_cnn.yaml", "0 2 * * *").serve()  # until SIGTERM
    """

    def __init__(
        self,
        config: str | os.PathLike,
        cron: str | None = None,
        *,
        lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR,
        runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
        log_file: str | os.PathLike | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        command: Sequence[str] | None = None,
        fire_times: Iterable[float] | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.2,
        monitor: MonitorSchedule | None = None,
    ):
        self.config = Path(config)
        self.pipeline = pipeline_name_for(config)
        if cron is not None:
            parse_cron(cron)  # fail at start, not at the first tick
        if grace_seconds < 0:
            raise ScheduleError(f"--grace-seconds must be >= 0, got {grace_seconds}")
        self.cron = cron
        self.lock_dir = Path(lock_dir)
        self.run_dir = Path(runs_dir) / self.pipeline
        self.log_file = Path(log_file) if log_file else self.run_dir / "scheduler.jsonl"
        self.grace_seconds = grace_seconds
        self.command = list(command) if command else None
        self._fire_times = fire_times
        self._clock = clock
        self._poll_seconds = poll_seconds
        self.monitor = monitor
        if monitor is not None and monitor.cron is not None:
            parse_cron(monitor.cron)
        self._active: _ActiveRun | None = None
        self._stop_reason: str | None = None
        self._force_stop = False
        self._runs = 0

    # ----- public entry points

    def serve(self) -> int:
        """Triggers runs until SIGTERM/SIGINT (or the last injected fire time); returns 0."""
        if self._fire_times is None and self.cron is None and self.monitor is None:
            raise ScheduleError('a cron expression is needed to serve: pass --cron "0 2 * * *"')
        fire_times = iter(self._fire_times if self._fire_times is not None
                          else cron_fire_times(self.cron, self._clock) if self.cron is not None else ())
        monitor_times = self.monitor.fire_times_from(self._clock) if self.monitor else iter(())
        with self._stop_on_signals():
            next_fire = next(fire_times, None)
            next_monitor = next(monitor_times, None)
            self._log("scheduler_start", cron=self.cron, pid=os.getpid(), next_fire=_iso(next_fire),
                      human=f"scheduler started (pid {os.getpid()}, cron {self.cron!r}, "
                            f"next run {_iso(next_fire)})")
            while self._stop_reason is None:
                self._reap()
                if next_fire is None and next_monitor is None and self._active is None:
                    self._stop_reason = "no more fire times"
                elif next_fire is not None and self._clock() >= next_fire:
                    self._trigger(next_fire)
                    next_fire = next(fire_times, None)
                elif next_monitor is not None and self._clock() >= next_monitor:
                    self._monitor_tick(next_monitor)
                    next_monitor = next(monitor_times, None)
                else:
                    # Wake at least every second: a wall-clock jump (suspend, NTP) is noticed soon.
                    upcoming = [t for t in (next_fire, next_monitor) if t is not None]
                    wait = 1.0 if not upcoming else min(min(upcoming) - self._clock(), 1.0)
                    self._sleep(self._poll_seconds if self._active else wait)
            self._finish_active_run()
            self._log("scheduler_stop", reason=self._stop_reason, runs=self._runs,
                      human=f"scheduler stopped ({self._stop_reason}) after {self._runs} run(s)")
        return 0

    def run_once(self) -> int:
        """Triggers one run now and waits for it; returns its exit code (75 if skipped, 127 if
        the command could not be started, 128+N if it ended by signal N)."""
        with self._stop_on_signals():
            if not self._trigger(self._clock()):
                return EXIT_SKIPPED
            code = None
            while self._active is not None and self._stop_reason is None:
                code = self._reap()
                self._sleep(self._poll_seconds if code is None else 0.0)
            if self._active is not None:
                code = self._finish_active_run()
        if code is None:
            return EXIT_NOT_STARTED
        return 128 - code if code < 0 else code  # killed by signal N -> 128+N, like a shell

    def request_stop(self, reason: str = "stop requested") -> None:
        """No new triggers; a second request ends the grace period of a run in progress."""
        if self._stop_reason is not None:
            self._force_stop = True
        self._stop_reason = reason

    # ----- one run

    def _monitor_tick(self, fire_time: float) -> None:
        from pipeline.monitor.schedule_hook import monitor_tick  # the monitor loads TFDV: only when scheduled

        stamp = dt.datetime.fromtimestamp(fire_time, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        outcome = monitor_tick(self.config, self.monitor.request_log, retrain_on_drift=self.monitor.retrain_on_drift,
                               start_run=lambda: self._trigger(self._clock()), since=self.monitor.since,
                               report_dir=self.run_dir / "monitor" / stamp, command=self.monitor.command)
        self._log("monitor", fire_time=_iso(fire_time), **outcome.to_log(),
                  human=f"monitor: {outcome.status}, retrain {outcome.retrain}")

    def _trigger(self, fire_time: float) -> bool:
        """Starts a run unless one is going; returns False if the trigger was skipped."""
        if self._active is not None:
            return self._skip(fire_time, self._active.process.pid)
        locks = contextlib.ExitStack()
        try:
            held = locks.enter_context(pipeline_lock(self.pipeline, self.lock_dir))
        except PipelineLocked as busy:
            return self._skip(fire_time, busy.holder_pid)
        try:
            self._start_run(fire_time, held, locks)
        except BaseException:
            locks.close()
            raise
        return True

    def _start_run(self, fire_time: float, held: HeldLock, locks: contextlib.ExitStack) -> None:
        run_id = self._new_run_id()
        summary_json, output_log = self.run_dir / f"{run_id}.json", self.run_dir / f"{run_id}.log"
        argv = self._run_argv(summary_json)
        started = self._clock()
        try:
            with open(output_log, "ab") as output:
                # Own session: Ctrl-C on the scheduler's terminal reaches the scheduler only,
                # which then gives the run its grace period instead of killing it mid-write.
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           env={**os.environ, LOCK_FD_ENV: str(held.fd)},
                                           pass_fds=(held.fd,))
        except OSError as error:  # e.g. the command does not exist: a failed run, not a crash
            locks.close()
            self._runs += 1
            self._log("run", run_id=run_id, fire_time=_iso(fire_time), start=_iso(started),
                      end=_iso(started), duration_s=0.0, exit_code=None, status="failed",
                      error=f"could not start {argv[0]}: {error}", blessed=None, pushed_version=None,
                      summary_json=None, output_log=str(output_log),
                      human=f"run {run_id} failed to start: {error}")
            return
        write_holder_pid(held.fd, process.pid)  # a skipped trigger then names the run's pid
        self._active = _ActiveRun(process, locks, run_id, fire_time, started, summary_json, output_log)
        _stderr(f"{self.pipeline}: run {run_id} started (pid {process.pid}), output in {output_log}")

    def _skip(self, fire_time: float, holder_pid: int | None) -> bool:
        reason = f"previous run of {self.pipeline} still running (pid {holder_pid or 'unknown'})"
        self._log("skipped", fire_time=_iso(fire_time), holder_pid=holder_pid, reason=reason,
                  human=f"skipped: {reason}")
        return False

    def _run_argv(self, summary_json: Path) -> list[str]:
        if self.command is None:
            return [sys.executable, "-m", "pipeline", "run", "--config", str(self.config),
                    "--summary-json", str(summary_json)]
        # Plain replace, not str.format: a command's own braces (Python code, JSON) stay as they are.
        return [part.replace("{config}", str(self.config)).replace("{summary_json}", str(summary_json))
                for part in self.command]

    def _new_run_id(self) -> str:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.fromtimestamp(self._clock(), dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        run_id, n = stamp, 1
        while (self.run_dir / f"{run_id}.json").exists() or (self.run_dir / f"{run_id}.log").exists():
            n += 1
            run_id = f"{stamp}-{n}"
        return run_id

    def _reap(self) -> int | None:
        """Logs and releases a finished run; returns its exit code (None if still running)."""
        active = self._active
        if active is None or active.process.poll() is None:
            return None
        self._active = None
        active.locks.close()
        self._runs += 1
        ended, code = self._clock(), active.process.returncode
        status = "terminated" if active.terminated else ("succeeded" if code == 0 else "failed")
        summary = _read_summary(active.summary_json)
        blessed, pushed_version, error = _summary_outcome(summary)
        duration = round(ended - active.started, 3)
        self._log("run", run_id=active.run_id, fire_time=_iso(active.fire_time), start=_iso(active.started),
                  end=_iso(ended), duration_s=duration, exit_code=code, status=status, pid=active.process.pid,
                  blessed=blessed, pushed_version=pushed_version, error=error,
                  summary_json=str(active.summary_json) if summary else None,
                  output_log=str(active.output_log),
                  human=f"run {active.run_id} {status} (exit {code}) after {duration:.1f} s; blessed={blessed}, "
                        f"pushed_version={pushed_version}; output in {active.output_log}")
        return code

    def _finish_active_run(self) -> int | None:
        """Gives a run in progress the grace period, then terminates it; returns its exit code."""
        active = self._active
        if active is None:
            return None
        _stderr(f"{self.pipeline}: {self._stop_reason}: waiting up to {self.grace_seconds:g} s "
                f"for run {active.run_id} (pid {active.process.pid}) to finish")
        deadline = self._clock() + self.grace_seconds
        while active.process.poll() is None and not self._force_stop and self._clock() < deadline:
            time.sleep(self._poll_seconds)
        if active.process.poll() is None:
            active.terminated = True
            _signal_group(active.process, signal.SIGTERM)
            try:
                active.process.wait(KILL_AFTER_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(active.process, signal.SIGKILL)
                active.process.wait()
        return self._reap()

    def _sleep(self, seconds: float) -> None:
        """Sleeps in short slices, returning early once a stop is requested (signals do not
        cut `time.sleep` short in Python 3)."""
        end = time.monotonic() + seconds
        while self._stop_reason is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, self._poll_seconds))

    @contextlib.contextmanager
    def _stop_on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may install handlers; callers use request_stop()
            return
        def handler(signum, _frame):
            self.request_stop(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _log(self, event: str, *, human: str, **fields) -> None:
        record = {"event": event, "time": _iso(self._clock()), "pipeline": self.pipeline, **fields}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as log:
            log.write(json.dumps(record) + "\n")
        _stderr(f"{self.pipeline}: {human}")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:  # the run is its own session leader: signal it and everything it started
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _summary_outcome(summary: dict) -> tuple[bool | None, object | None, str | None]:
    """(blessed, pushed version, error) from `pipeline run --summary-json`: `blessed` is a
    bool, `pushed` is null or {"version": ..., "path": ...}, `error` is set on failure."""
    pushed = summary.get("pushed")
    version = pushed.get("version") if isinstance(pushed, dict) else summary.get("pushed_version")
    error = summary.get("error")
    return summary.get("blessed"), version, None if error is None else str(error)[:500]


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")


def _stderr(message: str) -> None:
    print(f"[schedule] {message}", file=sys.stderr, flush=True)
