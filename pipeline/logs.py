"""Logging for people: component progress and our own messages, not framework noise.

TFX, Beam, TF and absl log thousands of INFO lines per run. By default we keep
component start/finish/cache lines, our `pipeline.*` loggers, and errors.
`--verbose` shows everything; `--quiet` shows warnings and errors only.
"""
from __future__ import annotations

import logging
import os
import sys
import time

_COMPONENT_MESSAGES = ("Component %s is running.", "Component %s is finished.", "A cached execution %d is used.")


class _PeopleFilter(logging.Filter):
    def __init__(self):
        super().__init__()
        self.started = time.time()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("pipeline") or record.levelno >= logging.ERROR:
            return True
        if record.msg in _COMPONENT_MESSAGES:
            if record.msg == _COMPONENT_MESSAGES[0]:
                record.msg, record.args = "%s: running", record.args
            elif record.msg == _COMPONENT_MESSAGES[1]:
                record.msg = "%s: done"
            else:
                record.msg = "cached result used (execution %d)"
            return True
        return False


def configure(verbosity: str = "normal") -> None:
    """verbosity: quiet | normal | verbose."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    if verbosity == "verbose":
        root.setLevel(logging.INFO)
    else:
        handler.addFilter(_PeopleFilter())
        root.setLevel(logging.WARNING if verbosity == "quiet" else logging.INFO)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbosity == "quiet":
        os.environ["PIPELINE_QUIET"] = "1"
    root.addHandler(handler)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity("info" if verbosity != "quiet" else "warning")
        absl_logging.use_python_logging()
        logging.getLogger("absl").handlers = []
        logging.getLogger("absl").propagate = True
    except ImportError:
        pass
    for noisy in ("tensorflow", "apache_beam", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbosity != "verbose" else logging.INFO)
