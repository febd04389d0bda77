"""The optimized artifact inside a model version: folder, file names, manifest schema, I/O.

A pushed version stays a plain SavedModel for TF Serving; the ModelOptimizer adds an ONNX
model (and, on a TensorRT machine, a TensorRT plan) plus `manifest.json` under
`<version>/assets.extra/optimized/`. TF Serving ignores that folder: from `assets.extra/`
it only reads `tf_serving_warmup_requests`, and the graph never references it.

    <version>/saved_model.pb, variables/, assets/label_names.txt      (TF Serving, unchanged)
    <version>/assets.extra/optimized/manifest.json                    (this module's schema)
    <version>/assets.extra/optimized/model.onnx                       (ONNX Runtime; Triton onnxruntime)
    <version>/assets.extra/optimized/model.plan                       (optional: TensorRT engine, Triton tensorrt)
    <version>/assets.extra/optimized/label_names.txt                  (copy of assets/label_names.txt)

A server decides whether to use it with one call; anything wrong raises ManifestError
naming the problem (missing file, checksum mismatch, gates not passed, unknown schema):

    manifest = load_optimized("/models/digits/3")        # None: the version has no artifact
    art = manifest["artifacts"][0]                       # {"signature": "serving_images", "file": "model.onnx", ...}
    path = artifact_path("/models/digits/3", art)
    providers = execution_providers(onnxruntime.get_available_providers())
    labels = read_labels("/models/digits/3", manifest)   # to rebuild the `classes` output

Pure Python + json; TensorFlow is imported only to reach non-local paths (gs://, hdfs://).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import uuid
from typing import Any, Iterable, Mapping, Sequence

OPTIMIZED_DIR = os.path.join("assets.extra", "optimized")
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
TENSORRT_PLAN_FILE = "model.plan"
LABELS_FILE = "label_names.txt"
SCHEMA_VERSION = 1

ENGINES = ("onnxruntime", "tensorrt")  # what runs the artifact
PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = {"onnx": ONNX_FILE, "tensorrt_plan": TENSORRT_PLAN_FILE}
DTYPES = ("uint8", "int32", "int64", "float16", "float32", "string")
# ONNX Runtime execution providers, best first; the CPU EP is always the last resort.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GATES = ("parity", "accuracy", "speed")
# The `classes` output (strings) is not in the ONNX graph; servers rebuild it from the labels.
CLASSES_OUTPUT = "classes"


class ManifestError(ValueError):
    """The optimized artifact must not be served; the message says why and what to do."""


# --------------------------------------------------------------------------- layout


def optimized_dir(version_dir: str) -> str:
    """`<version_dir>/assets.extra/optimized`."""
    return os.path.join(version_dir, OPTIMIZED_DIR)


def manifest_path(version_dir: str) -> str:
    return os.path.join(optimized_dir(version_dir), MANIFEST_FILE)


def artifact_path(version_dir: str, artifact: Mapping[str, Any]) -> str:
    """Absolute path of one manifest artifact (its `file` is relative to the optimized folder)."""
    return os.path.join(optimized_dir(version_dir), artifact["file"])


def has_optimized(version_dir: str) -> bool:
    return _exists(manifest_path(version_dir))


# --------------------------------------------------------------------------- schema


def _need(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise ManifestError(f"manifest {where}: {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_tensor(spec: Any, where: str) -> None:
    _need(isinstance(spec, Mapping), where, "must be an object {name, dtype, shape}")
    _need(isinstance(spec.get("name"), str) and spec["name"] != "", where, "needs a non-empty string `name`")
    _need(spec.get("dtype") in DTYPES, where, f"`dtype` {spec.get('dtype')!r} is not one of {DTYPES}")
    shape = spec.get("shape")
    _need(isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape), where,
          f"`shape` {shape!r} must be a list of ints (-1 = any size)")


def _check_artifact(artifact: Any, i: int) -> None:
    where = f"artifacts[{i}]"
    _need(isinstance(artifact, Mapping), where, "must be an object")
    _need(isinstance(artifact.get("signature"), str) and artifact["signature"], where, "needs the `signature` it implements")
    _need(artifact.get("format") in FORMATS, where, f"`format` {artifact.get('format')!r} is not one of {sorted(FORMATS)}")
    name = artifact.get("file")
    _need(isinstance(name, str) and name and os.path.basename(name) == name and name not in (".", ".."), where,
          f"`file` {name!r} must be a plain file name inside {OPTIMIZED_DIR}")
    _need(isinstance(artifact.get("sha256"), str) and len(artifact["sha256"]) == 64, where, "needs the file's `sha256` (64 hex digits)")
    _need(isinstance(artifact.get("bytes"), int) and artifact["bytes"] > 0, where, "needs the file size `bytes` > 0")
    for key in ("inputs", "outputs"):
        specs = artifact.get(key)
        _need(isinstance(specs, list) and specs, where, f"needs a non-empty `{key}` list")
        for j, spec in enumerate(specs):
            _check_tensor(spec, f"{where}.{key}[{j}]")


def _check_gates(gates: Any) -> list[str]:
    """Names of the gates that did not pass (or are missing)."""
    _need(isinstance(gates, Mapping), "gates", f"must be an object with {GATES}")
    failed = [g for g in GATES if not (isinstance(gates.get(g), Mapping) and gates[g].get("passed") is True)]
    return failed


def validate_manifest(manifest: Any) -> dict:
    """Checks a manifest dict; returns it. Raises ManifestError if it must not be served.

    The gates must all have passed (`gates.{parity,accuracy,speed}.passed` is true and
    `gates.passed` is true): a manifest recording a failed gate is rejected.

        validate_manifest(json.load(open(".../manifest.json")))
    """
    _need(isinstance(manifest, Mapping), "", f"must be a JSON object, got {type(manifest).__name__}")
    version = manifest.get("schema_version")
    _need(version == SCHEMA_VERSION, "schema_version", f"{version!r} is not supported (this code reads {SCHEMA_VERSION}); re-run the optimizer with this version of the code")
    _need(manifest.get("engine") in ENGINES, "engine", f"{manifest.get('engine')!r} is not one of {ENGINES}")
    _need(manifest.get("precision") in PRECISIONS, "precision", f"{manifest.get('precision')!r} is not one of {PRECISIONS}")
    artifacts = manifest.get("artifacts")
    _need(isinstance(artifacts, list) and artifacts, "artifacts", "needs at least one artifact")
    for i, artifact in enumerate(artifacts):
        _check_artifact(artifact, i)
    files = [a["file"] for a in artifacts]
    _need(len(set(files)) == len(files), "artifacts", f"file names repeat: {files}")
    labels = manifest.get("labels")
    _need(isinstance(labels, Mapping) and isinstance(labels.get("file"), str) and os.path.basename(labels["file"]) == labels["file"]
          and isinstance(labels.get("count"), int) and labels["count"] > 0, "labels", "needs {file: plain file name, count: > 0}")
    failed = _check_gates(manifest.get("gates"))
    _need(not failed and manifest["gates"].get("passed") is True, "gates",
          f"did not pass ({', '.join(failed) or 'gates.passed is not true'}); the optimizer kept the original model, serve it with TensorFlow")
    return dict(manifest)


# --------------------------------------------------------------------------- read / write


def read_manifest(version_dir: str) -> dict | None:
    """The validated manifest, or None if the version carries no optimized artifact."""
    path = manifest_path(version_dir)
    if not _exists(path):
        return None
    try:
        manifest = json.loads(_read(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); re-run the optimizer or delete {optimized_dir(version_dir)}") from e
    return validate_manifest(manifest)


def load_optimized(version_dir: str, *, verify_files: bool = True) -> dict | None:
    """read_manifest plus checks of every file it names (present, size, sha256, label count).

    Returns None when the version has no optimized artifact; raises ManifestError when it
    has one that must not be served (the server then falls back to TensorFlow).
    """
    manifest = read_manifest(version_dir)
    if manifest is None or not verify_files:
        return manifest
    for artifact in manifest["artifacts"]:
        path = artifact_path(version_dir, artifact)
        if not _exists(path):
            raise ManifestError(f"{path} is missing (the manifest names it); re-push the version")
        data = _read(path)
        if len(data) != artifact["bytes"] or hashlib.sha256(data).hexdigest() != artifact["sha256"]:
            raise ManifestError(f"{path} does not match its manifest ({len(data)} bytes, expected {artifact['bytes']}; sha256 differs): corrupt or replaced; re-push the version")
    labels = read_labels(version_dir, manifest)
    if len(labels) != manifest["labels"]["count"]:
        raise ManifestError(f"{manifest['labels']['file']} has {len(labels)} label names, the manifest says {manifest['labels']['count']}")
    return manifest


def read_labels(version_dir: str, manifest: Mapping[str, Any]) -> list[str]:
    """Label names in class-id order (rebuilds the `classes` output next to `probabilities`)."""
    path = os.path.join(optimized_dir(version_dir), manifest["labels"]["file"])
    if not _exists(path):
        raise ManifestError(f"{path} is missing (the manifest names it); re-push the version")
    return [line.rstrip("\r") for line in _read(path).decode("utf-8").split("\n") if line.strip()]


def artifacts_for(manifest: Mapping[str, Any], signature: str, fmt: str | None = None) -> list[dict]:
    """Artifacts implementing `signature` (optionally of one format), in manifest order."""
    return [a for a in manifest["artifacts"] if a["signature"] == signature and (fmt is None or a["format"] == fmt)]


def describe(manifest: Mapping[str, Any]) -> str:
    """One line for logs and model status, e.g. 'onnxruntime int8 (serving_images), 12.3x at batch 1'."""
    speed = manifest["gates"]["speed"]
    sigs = ", ".join(sorted({a["signature"] for a in manifest["artifacts"]}))
    ups = ", ".join(f"{v:.2f}x at batch {k}" for k, v in (speed.get("speedup") or {}).items())
    return f"{manifest['engine']} {manifest['precision']} ({sigs})" + (f", {ups}" if ups else "")


def write_optimized(version_dir: str, manifest: Mapping[str, Any], files: Mapping[str, bytes], labels: Sequence[str]) -> dict:
    """Writes the artifact files, the labels and the manifest; returns the manifest written.

    `manifest["artifacts"][i]["file"]` must be a key of `files`; `sha256`, `bytes`, `labels`
    and `schema_version` are filled in here, then the manifest is validated before anything
    replaces an existing folder. The folder is written beside and renamed into place, so a
    reader sees the old folder or the new one, never half of one (local paths).
    """
    manifest = copy.deepcopy(dict(manifest))
    manifest["schema_version"] = SCHEMA_VERSION
    for artifact in manifest.get("artifacts") or []:
        if artifact.get("file") not in files:
            raise ManifestError(f"manifest artifact {artifact.get('file')!r} has no data in `files` ({sorted(files)})")
        data = files[artifact["file"]]
        artifact.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["labels"] = {**(manifest.get("labels") or {}), "file": LABELS_FILE, "count": len(labels)}
    validate_manifest(manifest)
    target = optimized_dir(version_dir)
    staging = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    _makedirs(staging)
    try:
        for name, data in {**files, LABELS_FILE: ("\n".join(labels) + "\n").encode("utf-8")}.items():
            _write(os.path.join(staging, name), data)
        _write(os.path.join(staging, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
        if _exists(target):
            remove_optimized(version_dir)
        _rename(staging, target)
    except BaseException:
        _rmtree(staging)
        raise
    return manifest


def remove_optimized(version_dir: str) -> None:
    """Deletes `<version_dir>/assets.extra/optimized` (and `assets.extra` if that leaves it empty)."""
    target = optimized_dir(version_dir)
    if _exists(target):
        _rmtree(target)
    parent = os.path.dirname(target)
    if _is_local(parent) and os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)


# --------------------------------------------------------------------------- runtimes


def execution_providers(available: Iterable[str], *, allow_gpu: bool = True) -> list[str]:
    """ONNX Runtime providers to ask for, best first: TensorRT EP, CUDA EP, then CPU EP.

        execution_providers(onnxruntime.get_available_providers())
        # ['CPUExecutionProvider'] on CPU; ['TensorrtExecutionProvider', 'CUDAExecutionProvider',
        #  'CPUExecutionProvider'] with onnxruntime-gpu and TensorRT libraries
    """
    available = set(available)
    wanted = PROVIDER_PREFERENCE if allow_gpu else PROVIDER_PREFERENCE[-1:]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


# --------------------------------------------------------------------------- file access


def _is_local(path: str) -> bool:
    return "://" not in path


def _gfile():
    import tensorflow as tf  # only for remote filesystems (gs://, hdfs://, s3://)

    return tf.io.gfile


def _exists(path: str) -> bool:
    return os.path.exists(path) if _is_local(path) else _gfile().exists(path)


def _read(path: str) -> bytes:
    if _is_local(path):
        with open(path, "rb") as f:
            return f.read()
    with _gfile().GFile(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    if _is_local(path):
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return
    with _gfile().GFile(path, "wb") as f:
        f.write(data)


def _makedirs(path: str) -> None:
    os.makedirs(path, exist_ok=True) if _is_local(path) else _gfile().makedirs(path)


def _rmtree(path: str) -> None:
    if _is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    elif _gfile().exists(path):
        _gfile().rmtree(path)


def _rename(src: str, dst: str) -> None:
    os.rename(src, dst) if _is_local(src) else _gfile().rename(src, dst, overwrite=True)
