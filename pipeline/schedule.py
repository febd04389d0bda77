"""Scheduled pipeline runs: a cron-driven scheduler that never overlaps runs of a pipeline.

Each trigger starts `python -m pipeline run --config CONFIG --summary-json <file>` as a
subprocess, so a run that crashes or leaks memory never takes the scheduler down. Runs of
one pipeline never overlap: a run holds an exclusive `flock` on
`<lock-dir>/<pipeline>.lock`, and a trigger that finds the lock taken (by this
scheduler's previous run, another scheduler, or a manual run) is skipped and logged.
Every run's outcome is one JSON line in the log file.

    # long-running scheduler (stop it with SIGTERM or Ctrl-C)
    python -m pipeline schedule --config configs/digits_cnn.yaml --cron "0 2 * * *"
    # one run now, exit with its exit code
    python -m pipeline schedule --config configs/digits_cnn.yaml --once
    # let cron or systemd do the timing instead
    python -m pipeline schedule --config configs/digits_cnn.yaml --cron "0 2 * * *" --emit crontab
    python -m pipeline schedule --config configs/digits_cnn.yaml --cron "0 2 * * *" \\
        --emit systemd --output-dir deploy/systemd

Reuse the lock around any other run of a pipeline:

    with pipeline_lock("digits", "runs/locks"):
        run_the_pipeline()
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from croniter import croniter

DEFAULT_LOCK_DIR = "runs/locks"
DEFAULT_RUNS_DIR = "runs/schedule"
DEFAULT_GRACE_SECONDS = 60.0
# A child that ignores SIGTERM this long after the grace period gets SIGKILL.
KILL_AFTER_SECONDS = 10.0
# `--once` found the pipeline locked: no run happened (sysexits.h EX_TEMPFAIL, "try again later").
EXIT_SKIPPED = 75
EXIT_USAGE = 2
EXIT_NOT_STARTED = 127  # the run's command could not be started (the shell's "command not found")
# A process that holds a pipeline's lock passes the locked fd to its child under this
# name; `pipeline_lock` in the child adopts it instead of deadlocking on its parent's lock.
LOCK_FD_ENV = "PIPELINE_LOCK_FD"
REPO_DIR = Path(__file__).resolve().parents[1]
VALID_CRON_EXAMPLE = '"0 2 * * *" (every day at 02:00) or "*/15 * * * *" (every 15 minutes)'

_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ScheduleError(ValueError):
    """Bad input to the scheduler (config, cron expression, option); the message says how to fix it."""


class InvalidCronError(ScheduleError):
    """A cron expression this scheduler does not accept."""


class PipelineLocked(RuntimeError):
    """Another process holds the pipeline's lock: a run of that pipeline is still going."""

    def __init__(self, name: str, holder_pid: int | None, lock_path: Path):
        self.name, self.holder_pid, self.lock_path = name, holder_pid, lock_path
        pid = "unknown" if holder_pid is None else holder_pid
        super().__init__(f"previous run of {name} still running (pid {pid}); lock {lock_path}")


# --------------------------------------------------------------------------- names & lock


def validate_pipeline_name(name: str) -> str:
    """Returns `name` if it is safe as a file name (lock file, log directory, unit name)."""
    if not _PIPELINE_NAME.match(name or ""):
        raise ScheduleError(
            f"pipeline name {name!r} is not usable as a file name: use letters, digits, '_', '.' "
            f"or '-' (at most 128, starting with a letter or digit), e.g. 'digits_cnn'"
        )
    return name


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
    return validate_pipeline_name(str(name) if name else path.stem)


@dataclasses.dataclass(frozen=True)
class HeldLock:
    """A held pipeline lock; `fd` is what a child process inherits to keep holding it."""

    name: str
    path: Path
    fd: int


@contextlib.contextmanager
def pipeline_lock(name: str, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR) -> Iterator[HeldLock]:
    """Holds the exclusive, non-blocking lock `<lock_dir>/<name>.lock` for the `with` body.

    Raises `PipelineLocked` (with the holder's pid) at once if another process holds it.
    The lock is an `flock(2)`, so it dies with its holder: no stale locks after a crash.
    A process started under a held lock with the fd in `$PIPELINE_LOCK_FD` (what the
    scheduler and the emitted crontab line do) adopts that lock instead of conflicting
    with it.

        with pipeline_lock("digits_cnn", "runs/locks"):
            run_pipeline()
    """
    name = validate_pipeline_name(name)
    lock_path = Path(lock_dir) / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = _inherited_lock_fd(lock_path)
    inherited = fd is not None
    if fd is None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            # On an inherited fd this succeeds: the lock belongs to the shared open file.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise PipelineLocked(name, _holder_pid(lock_path), lock_path) from None
        _write_holder_pid(fd, os.getpid())
        yield HeldLock(name, lock_path, fd)
    finally:
        if not inherited:  # the parent owns an inherited fd; closing ours would not unlock anyway
            os.close(fd)


def _inherited_lock_fd(lock_path: Path) -> int | None:
    """The fd named by $PIPELINE_LOCK_FD if it is open on this very lock file, else None."""
    value = os.environ.get(LOCK_FD_ENV, "")
    if not value.isdigit():
        return None
    try:
        held, on_disk = os.fstat(int(value)), os.stat(lock_path)
    except OSError:
        return None
    return int(value) if (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino) else None


def _write_holder_pid(fd: int, pid: int) -> None:
    """Records who holds the lock, for the "still running (pid N)" message of the next trigger."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def _holder_pid(lock_path: Path) -> int | None:
    try:
        return int(lock_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- cron syntax

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_WEEKDAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_SYSTEMD_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_NO_EXTENSIONS = "non-standard extensions such as L, W, #, ? and H are not supported"
_CRON_ITEM = re.compile(r"^(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int] = dataclasses.field(default_factory=dict)


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS),
    _FieldSpec("day-of-week", 0, 7, _WEEKDAYS),  # 0 and 7 are both Sunday
)


@dataclasses.dataclass(frozen=True)
class _CronItem:
    """One comma-separated item of a field: `*`, `a`, `a-b`, each optionally `/step`."""

    start: int
    end: int
    step: int
    star: bool  # written as `*` (with or without a step)
    open_range: bool  # written as `a/step`: from a to the field's maximum

    def values(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A validated standard 5-field cron expression (aliases like @daily expanded)."""

    expression: str
    fields: tuple[tuple[_CronItem, ...], ...]

    def restricted(self, index: int) -> bool:
        return self.fields[index] != (_star_item(_FIELDS[index]),)


def _star_item(spec: _FieldSpec) -> _CronItem:
    return _CronItem(spec.low, spec.high, 1, star=True, open_range=False)


def parse_cron(expression: str) -> CronSchedule:
    """Validates a standard cron expression: 5 fields or @hourly/@daily/@weekly/@monthly/@yearly.

    Non-standard extensions (seconds field, L, W, #, ?, H) are refused so that what runs
    here can always be handed to crontab or a systemd timer.

        parse_cron("0 2 * * 1-5")  # 02:00 on weekdays
    """
    text = " ".join(str(expression).split())
    if text.startswith("@") and text.lower() not in _CRON_ALIASES:
        _cron_error(expression, f"{text} is not a schedule this scheduler knows; use one of "
                                f"{', '.join(_CRON_ALIASES)} or 5 fields")
    text = _CRON_ALIASES.get(text.lower(), text)
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        _cron_error(expression, f"it has {len(parts)} field(s), not 5 "
                                "(minute hour day-of-month month day-of-week)")
    fields = tuple(_parse_field(expression, part, spec) for part, spec in zip(parts, _FIELDS))
    if not croniter.is_valid(text):  # a second opinion from the library that computes fire times
        _cron_error(expression, "croniter rejects it")
    return CronSchedule(text, fields)


def _parse_field(expression: str, text: str, spec: _FieldSpec) -> tuple[_CronItem, ...]:
    items = []
    for raw in text.split(","):
        match = _CRON_ITEM.match(raw.lower())
        if not match:
            _cron_error(expression, f"{spec.name} item {raw!r} is not '*', 'N' or 'N-M', each optionally "
                                    f"with '/STEP' ({_NO_EXTENSIONS})")
        base, step_text = match["base"], match["step"]
        step = int(step_text) if step_text else 1
        if step < 1:
            _cron_error(expression, f"{spec.name} step /{step_text} must be at least 1")
        if base == "*":
            items.append(_CronItem(spec.low, spec.high, step, star=True, open_range=False))
            continue
        bounds = [_field_value(expression, value, spec) for value in base.split("-")]
        start, end = bounds[0], bounds[-1]
        open_range = len(bounds) == 1 and step_text is not None
        if open_range:
            end = spec.high
        if start > end:
            _cron_error(expression, f"{spec.name} range {base} runs backwards; write it as two "
                                    "items, e.g. '5-6,0-1' instead of '5-1'")
        items.append(_CronItem(start, end, step, star=False, open_range=open_range))
    return tuple(items)


def _field_value(expression: str, value: str, spec: _FieldSpec) -> int:
    if not value.isdigit():
        if value not in spec.names:
            names = f" or a name like {next(iter(spec.names)).upper()}" if spec.names else ""
            _cron_error(expression, f"{spec.name} value {value.upper()!r} is not a number{names} "
                                    f"({_NO_EXTENSIONS})")
        return spec.names[value]
    if not spec.low <= int(value) <= spec.high:
        _cron_error(expression, f"{spec.name} value {value} is outside {spec.low}-{spec.high}")
    return int(value)


def _cron_error(expression: str, problem: str) -> None:
    raise InvalidCronError(
        f"invalid cron expression {expression!r}: {problem}. A valid example: {VALID_CRON_EXAMPLE}"
    )


def cron_fire_times(expression: str, clock: Callable[[], float] = time.time) -> Iterator[float]:
    """Endless fire times (epoch seconds) of `expression` in local time, each after the
    previous one and after `clock()` when asked: fire times missed while the machine
    slept are dropped, like cron does.
    """
    schedule = parse_cron(expression)
    last = clock()
    while True:
        # A naive local datetime in and out: `.timestamp()` then applies the local DST rules.
        start = dt.datetime.fromtimestamp(max(last, clock()))
        last = croniter(schedule.expression, start).get_next(dt.datetime).timestamp()
        yield last


# --------------------------------------------------------------------------- cron -> systemd


def cron_to_on_calendar(expression: str) -> list[str]:
    """systemd `OnCalendar=` values that fire exactly when the cron expression does.

    Cron fires when day-of-month OR day-of-week matches if both are restricted; systemd
    ANDs them, so that case becomes two OnCalendar values (a timer fires on their union).

        cron_to_on_calendar("*/15 8-17 * * 1-5")  # -> ["Mon..Fri *-*-* 08..17:00/15:00"]
    """
    schedule = _portable_cron(expression)
    minute, hour, dom, month, dow = schedule.fields
    time_part = f"{_systemd_numbers(hour, _FIELDS[1])}:{_systemd_numbers(minute, _FIELDS[0])}:00"
    month_text = _systemd_numbers(month, _FIELDS[3])
    by_day_of_month = f"*-{month_text}-{_systemd_numbers(dom, _FIELDS[2])} {time_part}"
    by_weekday = f"{_systemd_weekdays(dow)} *-{month_text}-* {time_part}"
    if schedule.restricted(2) and schedule.restricted(4):
        return [by_day_of_month, by_weekday]
    return [by_weekday] if schedule.restricted(4) else [by_day_of_month]


def _portable_cron(expression: str) -> CronSchedule:
    """Parses a cron expression that means the same to croniter, crond and systemd."""
    schedule = parse_cron(expression)
    both_days = schedule.restricted(2) and schedule.restricted(4)
    if both_days and any(item.star for item in schedule.fields[2] + schedule.fields[4]):
        raise ScheduleError(
            f"cron expression {expression!r} cannot be expressed unambiguously: with both days "
            "restricted, crond treats a day field starting with '*' (like '*/2') as unrestricted "
            "and ANDs the days, while croniter (this scheduler) ORs them. Write the field as a "
            "range instead, e.g. '1-31/2' or '0-6/2', to mean OR"
        )
    return schedule


def _systemd_numbers(items: Sequence[_CronItem], spec: _FieldSpec) -> str:
    if any(item.star and item.step == 1 for item in items):
        return "*"
    parts = []
    for item in items:
        if item.step == 1:
            parts.append(f"{item.start:02d}" if item.start == item.end else f"{item.start:02d}..{item.end:02d}")
        elif item.star or item.open_range:  # systemd's A/N: A, A+N, ... up to the field's maximum
            parts.append(f"{item.start:02d}/{item.step}")
        else:  # A-B/N: spelled out, older systemd releases lack A..B/N
            parts.extend(f"{value:02d}" for value in item.values())
    return ",".join(parts)


def _systemd_weekdays(items: Sequence[_CronItem]) -> str:
    days = sorted({value % 7 for item in items for value in item.values()}, key=lambda d: (d - 1) % 7)
    runs: list[list[int]] = []  # consecutive days in Mon..Sun order
    for day in days:
        if runs and (runs[-1][-1] + 1) % 7 == day and runs[-1][-1] != 0:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = []
    for run in runs:
        if len(run) >= 3:
            names.append(f"{_SYSTEMD_WEEKDAYS[run[0]]}..{_SYSTEMD_WEEKDAYS[run[-1]]}")
        else:
            names.extend(_SYSTEMD_WEEKDAYS[day] for day in run)
    return ",".join(names)


# --------------------------------------------------------------------------- the scheduler


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
        self._active: _ActiveRun | None = None
        self._stop_reason: str | None = None
        self._force_stop = False
        self._runs = 0

    # ----- public entry points

    def serve(self) -> int:
        """Triggers runs until SIGTERM/SIGINT (or the last injected fire time); returns 0."""
        if self._fire_times is None and self.cron is None:
            raise ScheduleError('a cron expression is needed to serve: pass --cron "0 2 * * *"')
        fire_times = iter(self._fire_times if self._fire_times is not None
                          else cron_fire_times(self.cron, self._clock))
        with self._stop_on_signals():
            next_fire = next(fire_times, None)
            self._log("scheduler_start", cron=self.cron, pid=os.getpid(), next_fire=_iso(next_fire),
                      human=f"scheduler started (pid {os.getpid()}, cron {self.cron!r}, "
                            f"next run {_iso(next_fire)})")
            while self._stop_reason is None:
                self._reap()
                if next_fire is None and self._active is None:
                    self._stop_reason = "no more fire times"
                elif next_fire is not None and self._clock() >= next_fire:
                    self._trigger(next_fire)
                    next_fire = next(fire_times, None)
                else:
                    # Wake at least every second: a wall-clock jump (suspend, NTP) is noticed soon.
                    wait = 1.0 if next_fire is None else min(next_fire - self._clock(), 1.0)
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
        _write_holder_pid(held.fd, process.pid)  # a skipped trigger then names the run's pid
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


# --------------------------------------------------------------------------- crontab / systemd


def _once_argv(config: str | os.PathLike, lock_dir: str | os.PathLike, runs_dir: str | os.PathLike,
               log_file: str | os.PathLike | None, grace_seconds: float, command: Sequence[str] | None,
               python: str | None) -> list[str]:
    """`python -m pipeline schedule --once ...` with absolute paths, for cron and systemd."""
    argv = [os.path.abspath(python or sys.executable),  # not resolved: keep the venv's symlink
            "-m", "pipeline", "schedule", "--once", "--config", str(Path(config).resolve()),
            "--lock-dir", str(Path(lock_dir).resolve()), "--runs-dir", str(Path(runs_dir).resolve()),
            "--grace-seconds", f"{grace_seconds:g}"]
    if log_file is not None:
        argv += ["--log-file", str(Path(log_file).resolve())]
    if command:
        argv += ["--command", shlex.join(command)]
    return argv


def crontab_line(cron: str, config: str | os.PathLike, *, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR,
                 runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR, log_file: str | os.PathLike | None = None,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS, command: Sequence[str] | None = None,
                 python: str | None = None) -> str:
    """A crontab entry (comment + line) that runs the pipeline once per cron tick.

    flock(1) holds the pipeline's lock on fd 9, so a tick is skipped while the previous
    run (or any other holder) still has it; the run adopts the lock via $PIPELINE_LOCK_FD.

        print(crontab_line("0 2 * * *", "configs/digits_cnn.yaml"))
    """
    schedule = _portable_cron(cron)
    name = pipeline_name_for(config)
    once = _once_argv(config, lock_dir, runs_dir, log_file, grace_seconds, command, python)
    lock_file = Path(lock_dir).resolve() / f"{name}.lock"
    run_dir = Path(runs_dir).resolve() / name
    cron_log = run_dir / "cron.log"  # the shell's own output; run outcomes go to --log-file
    flock = shutil.which("flock") or "/usr/bin/flock"
    q = shlex.quote
    body = (f"cd {q(str(REPO_DIR))} && mkdir -p {q(str(lock_file.parent))} {q(str(run_dir))} && "
            f"{{ {q(flock)} -n 9 || {{ echo \"skipped: previous run of {name} still running "
            f"(pid $(cat {q(str(lock_file))}))\"; exit 0; }}; {LOCK_FD_ENV}=9 {shlex.join(once)}; }} "
            f"9>>{q(str(lock_file))} >>{q(str(cron_log))} 2>&1")
    if "%" in body or "\n" in body:  # crontab turns % into a newline
        raise ScheduleError("a path or the command contains '%' or a newline, which a crontab line "
                            "cannot hold; move the repo/config to a path without them")
    comment = (f"# {name}: one pipeline run per tick of {schedule.expression!r} (local time); flock(1) "
               f"skips a tick while the previous run holds {lock_file}")
    return f"{comment}\n{schedule.expression} {body}"


def _systemd_quote(arg: str) -> str:
    escaped = arg.replace("%", "%%").replace("$", "$$")  # systemd specifiers and variables
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(cron: str, config: str | os.PathLike, *, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR,
                  runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR, log_file: str | os.PathLike | None = None,
                  user: str = "CHANGE_ME", grace_seconds: float = DEFAULT_GRACE_SECONDS,
                  command: Sequence[str] | None = None, python: str | None = None) -> dict[str, str]:
    """A systemd `.service` (one run) and `.timer` (the cron schedule): {file name: content}.

    systemd never starts a oneshot service that is still running, and the run takes the
    pipeline lock too, so runs never overlap.

        units = systemd_units("0 2 * * *", "configs/digits_cnn.yaml", user="mlops")
    """
    calendars = cron_to_on_calendar(cron)
    name = pipeline_name_for(config)
    if user in ("root", "0") or not re.fullmatch(r"[a-z_][a-z0-9_-]*", user, re.IGNORECASE):
        raise ScheduleError(f"--user {user!r}: give the name of an existing non-root user that owns the repo")
    once = _once_argv(config, lock_dir, runs_dir, log_file, grace_seconds, command, python)
    unit = f"tfx-pipeline-{name}"
    service = f"""\
# {unit}.service: one run of the TFX pipeline {name!r} (started by {unit}.timer).
# Install: copy both files to /etc/systemd/system/, set User=, then
#   systemctl daemon-reload && systemctl enable --now {unit}.timer
[Unit]
Description=TFX pipeline run: {name}

[Service]
Type=oneshot
User={user}
WorkingDirectory={_systemd_quote(str(REPO_DIR))}
Environment=PYTHONUNBUFFERED=1
ExecStart={" ".join(_systemd_quote(arg) for arg in once)}
# SIGTERM goes to the scheduler only; it gives the run --grace-seconds, then stops it.
KillMode=mixed
TimeoutStopSec={int(grace_seconds + KILL_AFTER_SECONDS) + 5}
# Hardening: no privilege gain, read-only /usr /boot /etc, private /tmp and devices
# (drop PrivateDevices= for GPU training).
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
"""
    on_calendar = "\n".join(f"OnCalendar={calendar}" for calendar in calendars)
    timer = f"""\
# {unit}.timer: cron {parse_cron(cron).expression!r} in the machine's local time.
[Unit]
Description=Schedule of the TFX pipeline {name}

[Timer]
{on_calendar}
# After downtime, run once for the missed ticks (cron would not).
Persistent=true
Unit={unit}.service

[Install]
WantedBy=timers.target
"""
    return {f"{unit}.service": service, f"{unit}.timer": timer}


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline schedule",
        description="Run a pipeline on a cron schedule, never two runs of it at once.")
    parser.add_argument("--config", required=True, help="the pipeline's YAML config")
    parser.add_argument("--cron", help='cron expression in local time, e.g. "0 2 * * *" (needed unless --once)')
    parser.add_argument("--once", action="store_true",
                        help="run once now, wait, exit with the run's exit code (75: skipped, locked)")
    parser.add_argument("--emit", choices=("crontab", "systemd"),
                        help="print a crontab line or systemd units instead of scheduling here")
    parser.add_argument("--output-dir", help="with --emit systemd: write the unit files here")
    parser.add_argument("--user", default="CHANGE_ME", help="with --emit systemd: the non-root User=")
    parser.add_argument("--lock-dir", default=DEFAULT_LOCK_DIR, help="directory of <pipeline>.lock files")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR,
                        help="each run's summary JSON and output go to RUNS_DIR/<pipeline>/")
    parser.add_argument("--log-file", help="JSON-lines log (default RUNS_DIR/<pipeline>/scheduler.jsonl)")
    parser.add_argument("--grace-seconds", type=float, default=DEFAULT_GRACE_SECONDS,
                        help="on SIGTERM/SIGINT, how long a run in progress may finish (default 60)")
    parser.add_argument("--run-now", action="store_true", help="also trigger one run at start-up")
    # For tests: a fast fake job instead of `python -m pipeline run`; {config} and
    # {summary_json} are filled in.
    parser.add_argument("--command", help=argparse.SUPPRESS)
    return parser


def cli(argv: list[str]) -> int:
    """`python -m pipeline schedule ...`; returns the exit code (2 for bad input)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return int(exit_.code or 0)
    command = shlex.split(args.command) if args.command else None
    try:
        if args.output_dir and args.emit != "systemd":
            raise ScheduleError("--output-dir only applies to --emit systemd")
        if args.emit:
            if not args.cron:
                raise ScheduleError(f"--emit {args.emit} needs --cron, e.g. --cron \"0 2 * * *\"")
            return _emit(args, command)
        if not args.once and not args.cron:
            raise ScheduleError('pass --cron "0 2 * * *" (or --once for a single run now)')
        fire_times = _now_then(cron_fire_times(args.cron)) if args.run_now and not args.once else None
        scheduler = Scheduler(args.config, args.cron, lock_dir=args.lock_dir, runs_dir=args.runs_dir,
                              log_file=args.log_file, grace_seconds=args.grace_seconds, command=command,
                              fire_times=fire_times)
        return scheduler.run_once() if args.once else scheduler.serve()
    except ScheduleError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _now_then(fire_times: Iterator[float]) -> Iterator[float]:
    yield time.time()
    yield from fire_times


def _emit(args: argparse.Namespace, command: list[str] | None) -> int:
    if args.emit == "crontab":
        print(crontab_line(args.cron, args.config, lock_dir=args.lock_dir, runs_dir=args.runs_dir,
                           log_file=args.log_file, grace_seconds=args.grace_seconds, command=command))
        return 0
    units = systemd_units(args.cron, args.config, lock_dir=args.lock_dir, runs_dir=args.runs_dir,
                          log_file=args.log_file, user=args.user, grace_seconds=args.grace_seconds,
                          command=command)
    if not args.output_dir:
        for file_name, text in units.items():
            print(f"# ---- {file_name} ----\n{text}")
        return 0
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for file_name, text in units.items():
        (out / file_name).write_text(text)
        print(out / file_name)
    return 0


if __name__ == "__main__":  # `python -m pipeline.schedule ...` works without the package's dispatcher
    sys.exit(cli(sys.argv[1:]))
