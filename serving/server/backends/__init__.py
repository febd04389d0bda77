"""Backends: what runs a signature's computation once its inputs are checked.

A `Signature` checks requests against its SignatureDef, batches them, and hands the arrays
to its backend, `backend.run(arrays) -> {output name: ndarray}`:

* `tensorflow` (tensorflow_backend.py): the SavedModel's concrete function;
* `onnxruntime` (onnx_backend.py): the optimized artifact the ModelOptimizer attached under
  `<version>/assets.extra/optimized/` (serving/optimized.py), on the best execution
  provider ONNX Runtime offers (TensorRT EP, CUDA EP, CPU EP, in that order).

`choose_backends` picks one per signature when a version loads:

    choice = choose_backends("/models/digits/3", ["serving_default", "serving_images"], signature_defs,
                             BackendOptions(mode="auto"))
    choice.backends   # {"serving_images": OnnxRuntimeBackend(...)}; absent = TensorFlow
    choice.status     # "serving_images: onnxruntime (CPUExecutionProvider, fp32); other signatures: tensorflow"

Modes (`--backend`): `auto` serves the artifact where it is valid and falls back to
TensorFlow, with the reason in the status, where it is not; `tensorflow` never uses it;
`onnxruntime` requires it: a version without a valid artifact fails to load (the previous
version keeps serving, `latest` falls back to the newest version that loads).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Protocol

import grpc

from serving import optimized
from serving.server.errors import ServingError
from serving.server.options import BACKENDS

MODES = BACKENDS
TENSORFLOW = "tensorflow"
ONNXRUNTIME = "onnxruntime"
_log = logging.getLogger(__name__)


class Backend(Protocol):
    """What a Signature calls; `run` gets checked arrays and returns every output by name."""

    name: str  # "tensorflow" or "onnxruntime"

    def run(self, arrays: Mapping) -> dict: ...

    def describe(self) -> str: ...


class BackendUnavailable(Exception):
    """The optimized artifact cannot serve this version; the message says why."""


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """How versions pick their backends.

    Args:
        mode: `auto`, `tensorflow` or `onnxruntime` (see the module docstring).
        onnxruntime_intra_op_threads: ONNX Runtime intra-op threads per session
            (0 = ONNX Runtime's default, one per physical core).
        onnxruntime_allow_spinning: let ONNX Runtime's idle worker threads spin (lower
            latency on an idle machine, burnt CPU on a busy one).
    """

    mode: str = "auto"
    onnxruntime_intra_op_threads: int = 0
    onnxruntime_allow_spinning: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"backend {self.mode!r} is not one of {MODES}")
        if self.onnxruntime_intra_op_threads < 0:
            raise ValueError(f"onnxruntime_intra_op_threads={self.onnxruntime_intra_op_threads} must be >= 0 (0 = ONNX Runtime's default)")


@dataclasses.dataclass
class BackendChoice:
    """Per-signature backends of one version (absent = TensorFlow) and a status line."""

    backends: dict
    status: str = ""  # "" when the version has no optimized artifact and serves on TensorFlow

    def backend_of(self, signature: str) -> str:
        backend = self.backends.get(signature)
        return TENSORFLOW if backend is None else backend.name


def choose_backends(version_dir: str, signatures, signature_defs, options: BackendOptions) -> BackendChoice:
    """The backend of each signature of the version at `version_dir`.

    Raises FAILED_PRECONDITION only in mode `onnxruntime` (the version must not load);
    otherwise problems with the artifact become a TensorFlow fallback with the reason.
    """
    if options.mode == TENSORFLOW:
        note = "all signatures: tensorflow (--backend=tensorflow)" if _has_artifact(version_dir) else ""
        return BackendChoice({}, note)
    try:
        backends = _onnx_backends(version_dir, signatures, signature_defs, options)
    except BackendUnavailable as error:
        if options.mode == ONNXRUNTIME:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"--backend=onnxruntime needs a valid optimized artifact: {error} (or serve with --backend=auto)") from None
        if not _has_artifact(version_dir):
            return BackendChoice({}, "")
        _log.warning("%s: the optimized artifact is not used, serving on TensorFlow: %s", version_dir, error)
        return BackendChoice({}, f"all signatures: tensorflow (optimized artifact not used: {error})")
    served = "; ".join(f"{name}: {backend.describe()}" for name, backend in sorted(backends.items()))
    return BackendChoice(backends, f"{served}; other signatures: tensorflow")


def _has_artifact(version_dir: str) -> bool:
    try:
        return optimized.has_optimized(version_dir)
    except Exception:  # noqa: BLE001  (an unreadable folder counts as present: the reason comes from loading it)
        return True


def _onnx_backends(version_dir: str, signatures, signature_defs, options: BackendOptions) -> dict:
    try:
        manifest = optimized.load_optimized(version_dir)
    except optimized.ManifestError as error:
        raise BackendUnavailable(str(error)) from None
    except OSError as error:
        raise BackendUnavailable(f"cannot read {optimized.optimized_dir(version_dir)}: {error}") from None
    if manifest is None:
        raise BackendUnavailable(f"the version has no optimized artifact ({optimized.manifest_path(version_dir)} is missing); "
                                 "run the ModelOptimizer or serve with --backend=auto")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(f"onnxruntime is not installed ({error}); pip install onnxruntime (see requirements.txt)") from None
    from serving.server.backends.onnx_backend import OnnxRuntimeBackend

    labels = optimized.read_labels(version_dir, manifest)
    backends = {}
    for name in signatures:
        artifacts = optimized.artifacts_for(manifest, name, "onnx")
        if artifacts:
            backends[name] = OnnxRuntimeBackend.create(version_dir, manifest, artifacts[0], signature_defs[name], labels, options)
    if not backends:
        raise BackendUnavailable(f"the manifest has no ONNX artifact for the served signatures {sorted(signatures)}")
    return backends
