"""One atomic file write for every config, report and result file the project writes.

Readers (a polling TF Serving, a browser, the next run) see either the old file or the
whole new one: the text goes to a temporary file in the same folder (same filesystem, so
`os.replace` is atomic), is flushed to disk, then renamed over the target. It lives in
serving/ because serving/ is the bottom layer that components/ and pipeline/ build on, and
it needs nothing but the standard library.

    from serving.atomic import atomic_write_text
    atomic_write_text("runs/report.html", page)
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def atomic_write_text(path: str, text: str, *, mode: int = 0o644) -> str:
    """Writes `text` (UTF-8) to `path` atomically and returns `path`; creates the folder.

    `mode`: mkstemp makes 0600; files here are meant to be read by others (a server, a user).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write_json(path: str, value: Any, **dumps_options) -> str:
    """`atomic_write_text(path, json.dumps(value, **dumps_options))`."""
    return atomic_write_text(path, json.dumps(value, **dumps_options))
