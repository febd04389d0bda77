"""Atomic, idempotent publication of a SavedModel into TF Serving's layout.

TF Serving loads `<base>/<model>/<integer version>/`. A half-copied version directory
must never be visible there, so the copy goes to a hidden temp directory on the same
filesystem (TF Serving ignores non-integer names) and appears with one `os.rename`; the
model directory is then fsynced so the rename survives a power loss.

Each version carries `assets.extra/push_record.json` (TF Serving reads only
`tf_serving_warmup_requests` in `assets.extra/`): the pushed model artifact (`source`) and
a SHA-256 fingerprint of the copied files. A push of the same `source` with the same
fingerprint returns the existing version with `already_pushed=True` instead of a
byte-identical new one (a rerun after a crash right after the rename).
Temp directories left by killed pushes are removed by the next push (`remove_stale_tmp`).

    version, path, already_pushed = publish(saved_model_dir, "runs/serving", "digits", source=model.uri)
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from typing import NamedTuple

from serving.layout import ASSETS_EXTRA, TMP_PREFIX, is_model_name, list_versions, next_version

PUSH_RECORD = os.path.join(ASSETS_EXTRA, "push_record.json")
# `.tmp-<pid>-<32 hex>-<host.pid namespace>`: there, a pid that is not running is a dead push.
TMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{32}-(.+)$")
# A temp directory that cannot be tied to a dead local process (another host on a shared
# filesystem, an older name format, or a pid that may have been reused) is removed only once
# nothing in it changed for this long: far beyond any copy, so a live push is never touched.
STALE_TMP_SECONDS = 6 * 3600


class Published(NamedTuple):
    version: int
    path: str
    already_pushed: bool


def existing_versions(model_base: str) -> list[int]:
    """Every version name under `model_base` (folders and stray files: numbers a push must avoid)."""
    return list_versions(model_base, dirs_only=False)


def fingerprint(model_dir: str) -> str:
    """SHA-256 over every file's relative path and bytes (the push record excluded)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(model_dir):
        dirnames.sort()
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, model_dir)
            if rel == PUSH_RECORD:
                continue
            digest.update(rel.encode() + b"\0" + str(os.path.getsize(path)).encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def read_push_record(version_dir: str) -> dict | None:
    try:
        with open(os.path.join(version_dir, PUSH_RECORD)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def find_push(model_base: str, source: str, print_: str) -> Published | None:
    """The newest version already holding `source` with this fingerprint, if any."""
    for version in reversed(existing_versions(model_base)):
        path = os.path.join(model_base, str(version))
        record = read_push_record(path)
        if record and record.get("source") == source and record.get("fingerprint") == print_:
            return Published(version, path, True)
    return None


def publish(saved_model_dir: str, serving_base: str, model_name: str, source: str | None = None) -> Published:
    """Copy `saved_model_dir` to a new version; with `source`, reuse an identical earlier push."""
    if not is_model_name(model_name):
        raise ValueError(f"invalid model name {model_name!r}: use letters, digits, '_', '.', '-'")
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir}; nothing to push")
    model_base = os.path.join(serving_base, model_name)
    if not os.path.isdir(model_base):
        os.makedirs(model_base, exist_ok=True)
        _fsync_dir(os.path.dirname(os.path.abspath(model_base)))
    remove_stale_tmp(model_base)
    print_ = fingerprint(saved_model_dir)
    if source is not None:
        with _locked(model_base):
            found = find_push(model_base, source, print_)
        if found:
            return found
    tmp = os.path.join(model_base, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}-{_owner()}")
    try:
        shutil.copytree(saved_model_dir, tmp)
        record = {"source": source, "fingerprint": print_, "model_name": model_name, "pushed_at": time.time()}
        os.makedirs(os.path.join(tmp, ASSETS_EXTRA), exist_ok=True)
        with open(os.path.join(tmp, PUSH_RECORD), "w") as f:
            json.dump(record, f, indent=2)
        _fsync_tree(tmp)
        # The check and the rename under one lock: two reruns of the same push make one version.
        with _locked(model_base):
            found = find_push(model_base, source, print_) if source is not None else None
            if found:
                shutil.rmtree(tmp, ignore_errors=True)
                return found
            while True:  # a pusher without `source` may take the same version between our check and rename
                version = next_version(model_base)
                final = os.path.join(model_base, str(version))
                try:
                    os.rename(tmp, final)  # atomic on one filesystem; fails if `final` exists and is non-empty
                    break
                except OSError:
                    if not os.path.exists(final):
                        raise
            _fsync_dir(model_base)  # make the rename itself durable
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Published(version, final, False)


def remove_stale_tmp(model_base: str, now: float | None = None) -> list[str]:
    """Remove temp directories of pushes that can no longer finish; return their names.

    Stale: the name carries this host and pid namespace and a pid that is not running, or
    nothing inside changed for STALE_TMP_SECONDS. A push in progress is never removed."""
    now = time.time() if now is None else now
    removed = []
    for name in os.listdir(model_base):
        path = os.path.join(model_base, name)
        if not name.startswith(TMP_PREFIX) or not os.path.isdir(path):
            continue
        m = TMP_RE.match(name)
        dead_owner = bool(m) and m.group(2) == _owner() and not _pid_running(int(m.group(1)))
        try:
            idle = now - _newest_mtime(path)
        except OSError:  # removed meanwhile by another pusher
            continue
        if dead_owner or idle > STALE_TMP_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def _owner() -> str:
    """This host and pid namespace: where a pid in a temp directory's name means something."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. pid:[4026531836], one per container
    except OSError:
        namespace = ""
    return re.sub(r"[^A-Za-z0-9.]", "_", f"{socket.gethostname()}.{namespace}")[:96]


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, owned by someone else
        return True
    return True


def _newest_mtime(root: str) -> float:
    newest = os.stat(root).st_mtime
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return newest


@contextlib.contextmanager
def _locked(directory: str):
    """An exclusive flock on the model directory itself (no lock file TF Serving could see)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(dirpath)
