"""Name and path checks: what a request or a config file may name, and where versions live.

A model name follows `serving.layout.MODEL_NAME_PATTERN` (the rule `serving.tfs_config`
writes). A base path is resolved once with `os.path.realpath`; a version is a directory
whose name is all ASCII digits and whose real path stays inside that base path, so a
symlink or `..` cannot make the server load a SavedModel from elsewhere.

    base = resolve_base_path("digits", "runs/serving/digits")
    versions = list_version_dirs(base)   # {1: "/abs/runs/serving/digits/1", ...}
    check_inside_roots("digits", base, ("/abs/runs/serving",))   # PERMISSION_DENIED if not

Listing is bounded: at most `MAX_LISTED_ENTRIES` directory entries of a base path are
looked at per poll, so a huge directory (or `/proc`) cannot stall the poller.
"""
from __future__ import annotations

import itertools
import logging
import os

import grpc

from serving.layout import MODEL_NAME_PATTERN, parse_version
from serving.server.errors import ServingError, clip

MAX_LISTED_ENTRIES = 10_000  # entries of one base path looked at per poll
_ECHO_CHARS = 200  # longest client-given text repeated in an error message
_log = logging.getLogger(__name__)


def check_model_name(name: str) -> str:
    """Returns `name` if it is a valid model name, else raises INVALID_ARGUMENT."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise ServingError.invalid_argument(
            f"model name {clip(name)!r} is invalid: use 1-128 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (e.g. 'digits')"
        )
    return name


def resolve_base_path(name: str, base_path: str) -> str:
    """The real absolute path of a model's base path (the folder holding version dirs).

    Rejects empty paths, NUL bytes, `..` components and remote URIs (this server reads
    the local file system only). The path need not exist yet: versions may appear later.
    """
    if not isinstance(base_path, str) or not base_path.strip():
        raise ServingError.invalid_argument(f"model {name!r} has an empty base path; set --model_base_path")
    if "\x00" in base_path:
        raise ServingError.invalid_argument(f"base path of model {name!r} contains a NUL byte")
    if "://" in base_path:
        raise ServingError.invalid_argument(
            f"base path {base_path!r} of model {name!r} is a URI; the embedded server reads local "
            "directories only (copy the model locally or use --engine tfserving)"
        )
    if ".." in base_path.replace("\\", "/").split("/"):
        raise ServingError.invalid_argument(
            f"base path {base_path!r} of model {name!r} contains '..'; write the resolved path"
        )
    return os.path.realpath(base_path)


def version_dir_inside(base_real: str, entry: str) -> str | None:
    """Real path of `base_real/entry` if it is a directory inside `base_real`, else None."""
    real = os.path.realpath(os.path.join(base_real, entry))
    if os.path.commonpath([base_real, real]) != base_real or real == base_real:
        _log.warning("ignoring version %s/%s: it resolves to %s, outside the base path", base_real, entry, real)
        return None
    return real if os.path.isdir(real) else None


def list_version_dirs(base_real: str) -> dict[int, str]:
    """`{version: real path}` for every all-digits directory directly under `base_real`.

    Temporary directories (e.g. `.tmp-2` written before an atomic rename) are ignored,
    as is anything that resolves outside the base path.
    """
    try:
        with os.scandir(base_real) as scan:
            entries = [entry.name for entry in itertools.islice(scan, MAX_LISTED_ENTRIES + 1)]
    except (FileNotFoundError, NotADirectoryError):
        return {}
    if len(entries) > MAX_LISTED_ENTRIES:
        _log.warning("%s holds more than %d entries; only %d are looked at for versions: move old "
                     "versions and other files out of the base path", base_real, MAX_LISTED_ENTRIES, MAX_LISTED_ENTRIES)
        entries = entries[:MAX_LISTED_ENTRIES]
    versions = {}
    for entry in entries:
        version = parse_version(entry)
        if version is None:
            continue
        real = version_dir_inside(base_real, entry)
        if real is not None:
            versions[version] = real
    return versions


def check_inside_roots(name: str, base_real: str, roots) -> str:
    """Returns `base_real` if it is one of `roots` or inside one, else PERMISSION_DENIED.

    `roots` are real paths (see `allowed_roots`); `base_real` comes from `resolve_base_path`,
    so symlinks and `..` have already been resolved.
    """
    for root in roots:
        if os.path.commonpath([root, base_real]) == root:
            return base_real
    shown = base_real if len(base_real) <= _ECHO_CHARS else base_real[:_ECHO_CHARS] + "..."
    raise ServingError(
        grpc.StatusCode.PERMISSION_DENIED,
        f"base path {shown!r} of model {name[:_ECHO_CHARS]!r} is outside the allowed base-path roots {list(roots)}; "
        "a reload may only use base paths under the start-up base paths or under a root added with "
        "--allowed_model_base_path_roots=DIR[,DIR...]",
    )


def allowed_roots(startup_base_paths, extra_roots: str = "") -> tuple:
    """Real paths a reload's base paths must stay under: the start-up base paths plus the
    comma-separated `extra_roots` (`--allowed_model_base_path_roots`)."""
    roots = {os.path.realpath(path) for path in startup_base_paths}
    for root in extra_roots.split(","):
        root = root.strip()
        if not root:
            continue
        if "\x00" in root or "://" in root:
            raise ValueError(f"--allowed_model_base_path_roots entry {root!r} must be a local directory")
        roots.add(os.path.realpath(root))
    return tuple(sorted(roots))
