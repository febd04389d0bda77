"""Which processes a benchmark or test step started: Beam SDK workers under a pid (Linux /proc).

    beam_sdk_workers_under(proc.pid)   # {4211, 4212} while a multi_processing DirectRunner step runs
"""
from __future__ import annotations

import os


def beam_sdk_workers_under(root_pid: int) -> set[int]:
    """PIDs of Beam SDK worker processes descending from `root_pid` (read from /proc)."""
    parents, cmds = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmds[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    found = set()
    for pid, cmd in cmds.items():
        if "apache_beam.runners.worker.sdk_worker_main" in cmd and not cmd.startswith("/bin/sh"):  # not Beam's shell wrapper
            p, seen = pid, 0
            while p in parents and p != root_pid and seen < 50:
                p, seen = parents[p], seen + 1
            if p == root_pid:
                found.add(pid)
    return found
