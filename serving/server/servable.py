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

from serving.server.backends import BackendChoice, BackendOptions, choose_backends
from serving.server.batching import BatchingOptions
from serving.server.errors import ServingError, clip
from serving.server.options import DEFAULT_MAX_REQUEST_ROWS
from serving.server.signature import RequestLimits, Signature

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


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
                 max_tensor_bytes: int, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS, backends: BackendChoice | None = None):
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps variables and functions alive while the version serves
        self.signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in signature_defs.items():
            self.signature_def_map.signature_def[key].CopyFrom(signature_def)
        self.limits = RequestLimits(max_rows=max_request_rows, max_bytes=max_tensor_bytes)
        self.backends = backends or BackendChoice({})  # per-signature backend; status line for GetModelStatus
        self.signatures = {
            key: Signature(key, signature_defs[key], loaded.signatures[key], batching, self.limits, self.backends.backends.get(key))
            for key in loaded.signatures.keys()
            if key in signature_defs
        }

    @classmethod
    def load(cls, name: str, version: int, path: str, batching: BatchingOptions | None = None,
             max_tensor_bytes: int = 64 << 20, max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS,
             backend_options: BackendOptions = BackendOptions()) -> "LoadedVersion":
        signature_defs = read_signature_defs(path)
        loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
        served = [key for key in loaded.signatures.keys() if key in signature_defs]
        backends = choose_backends(path, served, signature_defs, backend_options)
        return cls(name, version, path, loaded, signature_defs, batching, max_tensor_bytes, max_request_rows, backends)

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
