"""Let cron or systemd do the timing: a crontab line and systemd .service/.timer units that
run `python -m pipeline schedule --once` per tick under the pipeline's lock.

    print(crontab_line("0 2 * * *", "configs/digits_cnn.yaml"))
    units = systemd_units("0 2 * * *", "configs/digits_cnn.yaml", user="mlops")
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Sequence

from pipeline.lock import DEFAULT_LOCK_DIR, LOCK_FD_ENV
from pipeline.schedule.on_calendar import cron_to_on_calendar
from pipeline.schedule.cron import ScheduleError, _portable_cron, parse_cron
from pipeline.schedule.loop import (DEFAULT_GRACE_SECONDS, DEFAULT_RUNS_DIR, KILL_AFTER_SECONDS, REPO_DIR,
                                    pipeline_name_for)


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
