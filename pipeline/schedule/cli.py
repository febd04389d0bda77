"""`python -m pipeline schedule ...`: run a pipeline on a cron schedule, once, or emit
crontab/systemd entries; exit 2 with a message for bad input."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator

from pipeline.lock import DEFAULT_LOCK_DIR
from pipeline.schedule.cron import ScheduleError, cron_fire_times
from pipeline.schedule.emit import crontab_line, systemd_units
from pipeline.schedule.loop import DEFAULT_GRACE_SECONDS, DEFAULT_RUNS_DIR, MonitorSchedule, Scheduler

EXIT_USAGE = 2


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
    parser.add_argument("--monitor-cron", help='also run `pipeline monitor` on this cron, e.g. "0 * * * *" (needs --request-log)')
    parser.add_argument("--request-log", help="the server's request-log directory (--request_log_dir) the monitor reads")
    parser.add_argument("--retrain-on-drift", action="store_true",
                        help="when the monitor finds drift, start a pipeline run (skipped while one holds the lock)")
    parser.add_argument("--monitor-since", help="the monitor's --since window, e.g. 1d")
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
        if bool(args.monitor_cron) != bool(args.request_log):
            raise ScheduleError("--monitor-cron and --request-log go together (when to check, and which request log)")
        if args.once and args.monitor_cron:
            raise ScheduleError("--once runs the pipeline once; for one drift check run `python -m pipeline monitor`")
        if args.retrain_on_drift and not args.monitor_cron:
            raise ScheduleError("--retrain-on-drift needs --monitor-cron and --request-log")
        monitor = MonitorSchedule(args.request_log, args.monitor_cron, args.retrain_on_drift, args.monitor_since) \
            if args.monitor_cron else None
        if not args.once and not args.cron and monitor is None:
            raise ScheduleError('pass --cron "0 2 * * *" (or --once for a single run now)')
        fire_times = _now_then(cron_fire_times(args.cron)) if args.run_now and not args.once else None
        scheduler = Scheduler(args.config, args.cron, lock_dir=args.lock_dir, runs_dir=args.runs_dir,
                              log_file=args.log_file, grace_seconds=args.grace_seconds, command=command,
                              fire_times=fire_times, monitor=monitor)
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
