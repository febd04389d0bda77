"""The ONNX Runtime backend: a signature served from the version's optimized ONNX artifact.

The artifact (serving/optimized.py) takes exactly what the signature takes (the Transform
preprocessing is inside the graph) and returns `probabilities`; `classes` is not in the
graph and is rebuilt from the version's label names, as the SavedModel returns it (string
[N, K], label names in class-id order). The request checks stay the SignatureDef's, so
clients see the same API, output names and dtypes whichever backend answers.

    backend = OnnxRuntimeBackend.create(version_dir, manifest, artifact, signature_def, labels, BackendOptions())
    backend.run({"images": uint8_batch})   # {"probabilities": f32 [N, K], "classes": object [N, K]}

Execution providers: TensorRT EP, CUDA EP, CPU EP, the first ones ONNX Runtime offers
(serving.optimized.execution_providers). Only the CPU EP runs on the machines this was
tested on; the GPU providers are tested up to their selection.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from serving import optimized
from serving.server.backends import BackendOptions, BackendUnavailable
from serving.server.errors import ServingError, clip

# manifest dtype -> TensorFlow DataType enum of the SignatureDef it must match
_TF_DTYPE = {"uint8": tf.uint8, "int32": tf.int32, "int64": tf.int64, "float16": tf.float16, "float32": tf.float32, "string": tf.string}


def session_options(options: BackendOptions):
    """ONNX Runtime SessionOptions for serving: intra-op threads and spinning from BackendOptions.

    Inter-op threads stay at ONNX Runtime's default (sequential execution): these graphs
    are chains of convolutions, and concurrency comes from the batcher's threads.
    """
    import onnxruntime

    session = onnxruntime.SessionOptions()
    session.intra_op_num_threads = options.onnxruntime_intra_op_threads
    if not options.onnxruntime_allow_spinning:
        session.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return session


def providers_for_host() -> list:
    """Execution providers to ask for on this host, best first (TensorRT EP, CUDA EP, CPU EP)."""
    import onnxruntime

    return optimized.execution_providers(onnxruntime.get_available_providers())


class OnnxRuntimeBackend:
    """One ONNX Runtime session behind one signature. Use `create`."""

    name = "onnxruntime"

    def __init__(self, session, signature: str, input_names: list, onnx_outputs: list, classes_row, precision: str):
        self._session = session
        self._signature = signature
        self._input_names = input_names
        self._onnx_outputs = onnx_outputs
        self._classes_row = classes_row  # object [1, K] of label bytes, or None if not an output
        self.precision = precision
        self.providers = list(session.get_providers())

    def describe(self) -> str:
        return f"onnxruntime ({self.providers[0]}, {self.precision})"

    @classmethod
    def create(cls, version_dir: str, manifest: Mapping, artifact: Mapping, signature_def, labels: list,
               options: BackendOptions) -> "OnnxRuntimeBackend":
        """Checks the artifact against the SignatureDef, opens the session, runs one row.

        Raises BackendUnavailable naming the mismatch or the ONNX Runtime error.
        """
        import onnxruntime

        signature = artifact["signature"]
        inputs = {spec["name"]: spec for spec in artifact["inputs"]}
        outputs = {spec["name"]: spec for spec in artifact["outputs"]}
        _match(signature, "inputs", inputs, signature_def.inputs)
        wanted_outputs = dict(signature_def.outputs)
        has_classes = optimized.CLASSES_OUTPUT in wanted_outputs and optimized.CLASSES_OUTPUT not in outputs
        if has_classes:
            if wanted_outputs.pop(optimized.CLASSES_OUTPUT).dtype != tf.string.as_datatype_enum:
                raise BackendUnavailable(f"{signature}: output '{optimized.CLASSES_OUTPUT}' is not a string tensor in the SignatureDef")
        _match(signature, "outputs", {k: v for k, v in outputs.items() if k in wanted_outputs}, wanted_outputs)
        path = optimized.artifact_path(version_dir, artifact)
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                model = f.read()
            session = onnxruntime.InferenceSession(model, session_options(options), providers=providers_for_host())
        except Exception as error:  # noqa: BLE001  (any ONNX Runtime failure means: serve on TensorFlow)
            raise BackendUnavailable(f"ONNX Runtime cannot load {path}: {type(error).__name__}: {clip(str(error))}") from None
        session_inputs = {i.name for i in session.get_inputs()}
        if session_inputs != set(inputs):
            raise BackendUnavailable(f"{path} takes inputs {sorted(session_inputs)}, the manifest says {sorted(inputs)}")
        onnx_outputs = sorted(wanted_outputs)
        missing = set(onnx_outputs) - {o.name for o in session.get_outputs()}
        if missing:
            raise BackendUnavailable(f"{path} has no output(s) {sorted(missing)}")
        classes_row = np.array([[label.encode("utf-8") for label in labels]], dtype=object) if has_classes else None
        backend = cls(session, signature, sorted(inputs), onnx_outputs, classes_row, artifact.get("precision") or manifest["precision"])
        backend._smoke_test(inputs, labels)
        return backend

    def _smoke_test(self, inputs: Mapping, labels: list) -> None:
        """One zero row through the session: a graph that cannot run is found at load, not per request."""
        if any(any(d < 0 for d in spec["shape"][1:]) for spec in inputs.values()):
            return  # unknown inner dims: nothing to make up; warmup requests still run
        arrays = {name: np.zeros([1, *spec["shape"][1:]], dtype=object if spec["dtype"] == "string" else spec["dtype"])
                  for name, spec in inputs.items()}
        try:
            outputs = self.run(arrays)
        except ServingError as error:
            raise BackendUnavailable(f"ONNX Runtime cannot run the artifact of {self._signature}: {error.message}") from None
        probabilities = outputs.get(self._onnx_outputs[0])
        if self._classes_row is not None and probabilities is not None and probabilities.shape[-1] != len(labels):
            raise BackendUnavailable(f"the artifact of {self._signature} returns {probabilities.shape[-1]} classes, the labels name {len(labels)}")

    def run(self, arrays: Mapping) -> dict:
        feeds = {name: _feed(arrays[name]) for name in self._input_names}
        try:
            values = self._session.run(self._onnx_outputs, feeds)
        except Exception as error:  # noqa: BLE001  (ONNX Runtime raises its own pybind exception types)
            raise ServingError.invalid_argument(f"signature '{self._signature}' (onnxruntime) rejected the inputs: {clip(str(error))}") from None
        outputs = dict(zip(self._onnx_outputs, values))
        if self._classes_row is not None:
            rows = values[0].shape[0] if values else next(iter(arrays.values())).shape[0]
            outputs[optimized.CLASSES_OUTPUT] = np.repeat(self._classes_row, rows, axis=0)
        return outputs


def _feed(array: np.ndarray) -> np.ndarray:
    if array.dtype == object:  # TF strings arrive as bytes; ONNX Runtime string tensors take str
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object])(array)
    return array


def _match(signature: str, kind: str, artifact_specs: Mapping, tensor_infos: Mapping) -> None:
    """The artifact's tensors must be the SignatureDef's: same names, dtypes and known dims."""
    if set(artifact_specs) != set(tensor_infos):
        raise BackendUnavailable(f"{signature}: the artifact's {kind} {sorted(artifact_specs)} are not the SignatureDef's {sorted(tensor_infos)}")
    for name, spec in artifact_specs.items():
        info = tensor_infos[name]
        if _TF_DTYPE[spec["dtype"]].as_datatype_enum != info.dtype:
            raise BackendUnavailable(f"{signature}: {kind[:-1]} '{name}' is {spec['dtype']} in the artifact and "
                                     f"{tf.dtypes.as_dtype(info.dtype).name} in the SignatureDef")
        if not info.tensor_shape.unknown_rank:
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) != len(spec["shape"]) or any(a >= 0 and b >= 0 and a != b for a, b in zip(dims, spec["shape"])):
                raise BackendUnavailable(f"{signature}: {kind[:-1]} '{name}' has shape {spec['shape']} in the artifact and {dims} in the SignatureDef")
