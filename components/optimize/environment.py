"""What this machine can do: TF-TRT, a GPU, the TensorRT and ONNX packages.

The skip reason users see is built from these facts, never from assumptions:

    acc = detect_accelerators()
    acc.tf_trt_ready     # False on TensorFlow 2.18+ (built without TensorRT)
    acc.describe()       # "TensorFlow 2.21.0 is built without TensorRT (...); no GPU visible; ..."
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os


@dataclasses.dataclass(frozen=True)
class Accelerators:
    tensorflow_version: str
    tf_trt_enabled: bool
    gpus: tuple[str, ...]
    tensorrt_version: str | None
    tensorrt_error: str | None
    tf2onnx_version: str | None
    onnxruntime_version: str | None

    @property
    def tf_trt_ready(self) -> bool:
        return self.tf_trt_enabled and bool(self.gpus)

    @property
    def tensorrt_ready(self) -> bool:
        return self.tensorrt_version is not None and bool(self.gpus) and self.onnx_ready

    @property
    def onnx_ready(self) -> bool:
        return self.tf2onnx_version is not None and self.onnxruntime_version is not None

    def describe(self) -> str:
        """One line of facts, e.g. for a skip reason or a bench header."""
        parts = []
        if self.tf_trt_enabled:
            parts.append(f"TensorFlow {self.tensorflow_version} has TF-TRT")
        else:
            parts.append(f"TensorFlow {self.tensorflow_version} is built without TensorRT (is_tensorrt_enabled() is False)")
        if self.gpus:
            parts.append(f"GPUs: {', '.join(self.gpus)}")
        elif os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            parts.append("no GPU visible (CUDA_VISIBLE_DEVICES is empty, which hides all GPUs)")
        else:
            parts.append("no GPU visible")
        if self.tensorrt_version:
            parts.append(f"tensorrt {self.tensorrt_version} installed")
        elif self.tensorrt_error:
            parts.append(f"tensorrt package fails to import ({self.tensorrt_error})")
        else:
            parts.append("tensorrt package not installed")
        if not self.onnx_ready:
            missing = [n for n, v in (("tf2onnx", self.tf2onnx_version), ("onnxruntime", self.onnxruntime_version)) if v is None]
            parts.append(f"{' and '.join(missing)} not installed")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _package_version(name: str) -> tuple[str | None, str | None]:
    """(version, import error); both None when the package is absent."""
    if importlib.util.find_spec(name) is None:
        return None, None
    try:
        module = importlib.import_module(name)
    except Exception as e:  # a broken CUDA/TensorRT install raises all kinds of errors
        return None, f"{type(e).__name__}: {e}"[:200]
    return str(getattr(module, "__version__", "unknown")), None


def _tf_trt_enabled() -> bool:
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils
    except ImportError:
        return False
    return bool(_pywrap_py_utils.is_tensorrt_enabled())


def detect_accelerators() -> Accelerators:
    import tensorflow as tf

    tensorrt_version, tensorrt_error = _package_version("tensorrt")
    return Accelerators(
        tensorflow_version=tf.__version__,
        tf_trt_enabled=_tf_trt_enabled(),
        gpus=tuple(d.name for d in tf.config.list_physical_devices("GPU")),
        tensorrt_version=tensorrt_version,
        tensorrt_error=tensorrt_error,
        tf2onnx_version=_package_version("tf2onnx")[0],
        onnxruntime_version=_package_version("onnxruntime")[0],
    )
