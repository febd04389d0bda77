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
from pipeline.lock import (DEFAULT_LOCK_DIR, LOCK_FD_ENV, HeldLock, InvalidPipelineName, PipelineLocked,
                           pipeline_lock, validate_pipeline_name)
from pipeline.schedule.on_calendar import cron_to_on_calendar
from pipeline.schedule.cli import EXIT_USAGE, cli
from pipeline.schedule.cron import (VALID_CRON_EXAMPLE, CronSchedule, InvalidCronError, ScheduleError,
                                    cron_fire_times, parse_cron)
from pipeline.schedule.emit import crontab_line, systemd_units
from pipeline.schedule.loop import (DEFAULT_GRACE_SECONDS, DEFAULT_RUNS_DIR, EXIT_NOT_STARTED, EXIT_SKIPPED,
                                    KILL_AFTER_SECONDS, REPO_DIR, MonitorSchedule, Scheduler, pipeline_name_for)

__all__ = [
    "DEFAULT_GRACE_SECONDS", "DEFAULT_LOCK_DIR", "DEFAULT_RUNS_DIR", "EXIT_NOT_STARTED", "EXIT_SKIPPED",
    "EXIT_USAGE", "KILL_AFTER_SECONDS", "LOCK_FD_ENV", "REPO_DIR", "VALID_CRON_EXAMPLE", "CronSchedule",
    "HeldLock", "InvalidCronError", "InvalidPipelineName", "PipelineLocked", "MonitorSchedule", "ScheduleError", "Scheduler",
    "cli", "cron_fire_times", "cron_to_on_calendar", "crontab_line", "parse_cron", "pipeline_lock",
    "pipeline_name_for", "systemd_units", "validate_pipeline_name",
]
