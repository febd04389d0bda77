"""One loaded model version: the SavedModel, its SignatureDefs and callable signatures.

    version = LoadedVersion.load("digits", 3, "/models/digits/3", batching=BatchingOptions())
    version.signature("serving_images").run({"images": images})
    version.backends.status   # which backend serves each signature (serving/server/backends)
"""
from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.contract import EXAMPLES_SIGNATURE
from serving.server.backends import BackendChoice, BackendOptions, choose_backends
from serving.server.batching import BatchingOptions
from serving.server.errors import ServingError, clip
from serving.server.loaders import SERVE_TAG, TFLITE_FILE, load_signatures
from serving.server.options import DEFAULT_MAX_REQUEST_ROWS
from serving.server.signature import RequestLimits, Signature

DEFAULT_SIGNATURE = EXAMPLES_SIGNATURE  # TF Serving's default when a request names none


def read_signature_defs(path: str):
    """The `signature_def` map of the `serve` MetaGraphDef in `path/saved_model.pb`."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:  # local or gs://
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ValueError(f"{path} has no MetaGraphDef tagged '{SERVE_TAG}'; export it with tf.saved_model.save")


class LoadedVersion:
    """A servable: model name + version + everything needed to answer requests.

    Use `LoadedVersion.load`; the constructor takes already-loaded parts (for tests).
    """

    def __init__(self, name: str, version: int, path: str, loaded, signature_defs, batching: BatchingOptions | None,
                 max_tensor_bytes: int, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS, *, functions=None,
                 method_name_check: bool = False, loader: str = "tf2", backends: BackendChoice | None = None):
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps variables and functions alive while the version serves
        self.loader = loader  # "tf2", "tf1-session" or "tflite"
        self.method_name_check = method_name_check  # --enable_signature_method_name_check
        self.signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in signature_defs.items():
            self.signature_def_map.signature_def[key].CopyFrom(signature_def)
        self.limits = RequestLimits(max_rows=max_request_rows, max_bytes=max_tensor_bytes)
        self.backends = backends or BackendChoice({})  # per-signature backend; status line for GetModelStatus
        if functions is None:
            functions = {key: loaded.signatures[key] for key in loaded.signatures.keys() if key in signature_defs}
        self.signatures = {key: Signature(key, signature_defs[key], function, batching, self.limits,
                                          self.backends.backends.get(key))
                           for key, function in functions.items()}

    @classmethod
    def load(cls, name: str, version: int, path: str, batching: BatchingOptions | None = None,
             max_tensor_bytes: int = 64 << 20, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS, *,
             method_name_check: bool = False, prefer_tflite: bool = False,
             backend_options: BackendOptions = BackendOptions()) -> "LoadedVersion":
        """TF2 loader, a TF1 session if that fails, or model.tflite with `prefer_tflite` (see loaders.py);
        then the backend of each signature (serving/server/backends: the gated ONNX artifact or TensorFlow)."""
        tflite = prefer_tflite and tf.io.gfile.exists(os.path.join(path, TFLITE_FILE))
        signature_defs = {} if tflite else read_signature_defs(path)
        defs, functions, loaded, loader = load_signatures(path, signature_defs, prefer_tflite=tflite)
        backends = choose_backends(path, list(functions), defs, backend_options) if loader == "tf2" else None
        return cls(name, version, path, loaded, defs, batching, max_tensor_bytes, max_request_rows,
                   functions=functions, method_name_check=method_name_check, loader=loader, backends=backends)

    def signature(self, name: str) -> Signature:
        """The signature `name` ('' means serving_default); INVALID_ARGUMENT if absent."""
        key = name or DEFAULT_SIGNATURE
        found = self.signatures.get(key)
        if found is None:
            raise ServingError.invalid_argument(
                f"signature '{clip(key)}' not found in model '{self.name}' version {self.version}; "
                f"available: {sorted(self.signatures)}"
            )
        return found

    def fill_model_spec(self, model_spec, signature_name: str | None = None) -> None:
        """Response `model_spec`: name, the version that answered and the signature used."""
        model_spec.name = self.name
        model_spec.version.value = self.version
        if signature_name is not None:
            model_spec.signature_name = signature_name or DEFAULT_SIGNATURE
