"""One run of a pipeline at a time: an exclusive `flock(2)` on `<lock-dir>/<pipeline>.lock`.

`python -m pipeline run` holds it for the whole run; the scheduler (pipeline/schedule/) holds it
for each run it starts and hands it to the child through `$PIPELINE_LOCK_FD`.

    with pipeline_lock("digits", "runs/locks"):
        run_the_pipeline()
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from serving.layout import MODEL_NAME_PATTERN as NAME_RE  # the one model/pipeline name rule

DEFAULT_LOCK_DIR = "runs/locks"
# A process that holds a pipeline's lock passes the locked fd to its child under this
# name; `pipeline_lock` in the child adopts it instead of deadlocking on its parent's lock.
LOCK_FD_ENV = "PIPELINE_LOCK_FD"


class InvalidPipelineName(ValueError):
    """A pipeline name that is not safe as a file name (lock file, log directory, unit name)."""


class PipelineLocked(RuntimeError):
    """Another process holds the pipeline's lock: a run of that pipeline is still going."""

    def __init__(self, name: str, holder_pid: int | None, lock_path: Path):
        self.name, self.holder_pid, self.lock_path = name, holder_pid, lock_path
        pid = "unknown" if holder_pid is None else holder_pid
        super().__init__(f"previous run of {name} still running (pid {pid}); lock {lock_path}")


def validate_pipeline_name(name: str) -> str:
    """Returns `name` if it is safe as a file name (lock file, log directory, unit name)."""
    if not NAME_RE.match(name or ""):
        raise InvalidPipelineName(
            f"pipeline name {name!r} is not usable as a file name: use letters, digits, '_', '.' "
            f"or '-' (at most 128, starting with a letter or digit), e.g. 'digits_cnn'"
        )
    return name


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
        write_holder_pid(fd, os.getpid())
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


def write_holder_pid(fd: int, pid: int) -> None:
    """Records who holds the lock, for the "still running (pid N)" message of the next trigger."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{pid}\n".encode(), 0)


def _holder_pid(lock_path: Path) -> int | None:
    try:
        return int(lock_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
