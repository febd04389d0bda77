"""How a version directory becomes callable signatures: TF2 loader, TF1 session fallback, TFLite.

TF Serving runs every SavedModel in a TF1 session; this server loads with
`tf.saved_model.load` (TF2) and falls back to a `tf.compat.v1.Session` with
`tf.compat.v1.saved_model.loader.load` when the TF2 loader refuses a TF1 graph (it
rejects, for one, a signature that maps two aliases to one tensor). With
`--prefer_tflite_model`, `<version>/model.tflite` (TF Serving's TFLite layout: the file
beside saved_model.pb) is served through `tf.lite.Interpreter` instead.

Every loader returns `{signature key: callable}`; a callable takes `{input alias: numpy
array}` and returns `{output alias: numpy array}` (`ArrayCall`), or is a TF2 concrete
function (which `Signature` calls directly).

    functions, keep_alive, kind = load_signatures("/models/half_plus_two/1", signature_defs)
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from serving.server.errors import ServingError

SERVE_TAG = "serve"
TFLITE_FILE = "model.tflite"
_log = logging.getLogger(__name__)


class ArrayCall:
    """A signature callable on numpy arrays (TF1 session or TFLite); `Signature` calls it as is."""

    takes_arrays = True


class SessionSignature(ArrayCall):
    """One SignatureDef run in a TF1 session, fed by tensor name like TF Serving's Session::Run.

    Uses a session callable (CallableOptions) rather than `Session.run`, which would refuse
    feeds whose shape differs from the placeholder's static shape: TF Serving feeds them.
    """

    def __init__(self, session, signature_def):
        self._session = session
        self._input_keys = sorted(signature_def.inputs)
        self._output_keys = sorted(signature_def.outputs)
        options = config_pb2.CallableOptions()
        options.feed.extend(signature_def.inputs[key].name for key in self._input_keys)
        options.fetch.extend(signature_def.outputs[key].name for key in self._output_keys)
        self._callable = session._make_callable_from_options(options)  # pylint: disable=protected-access

    def __call__(self, arrays) -> dict:
        results = self._callable(*[arrays[key] for key in self._input_keys])
        return {key: np.asarray(value) for key, value in zip(self._output_keys, results)}


class TfliteSignature(ArrayCall):
    """One signature of a TFLite model; the interpreter is not thread-safe, so calls are serialized."""

    def __init__(self, interpreter, key: str, lock: threading.Lock):
        self._runner = interpreter.get_signature_runner(key)
        self._lock = lock

    def __call__(self, arrays) -> dict:
        with self._lock:
            try:
                outputs = self._runner(**arrays)
            except ValueError as error:  # wrong shape or dtype for the interpreter
                raise ServingError.invalid_argument(f"the TFLite model rejected the inputs: {error}") from None
            return {key: np.array(value) for key, value in outputs.items()}


def tflite_signature_defs(interpreter) -> dict:
    """SignatureDefs (predict method) describing a TFLite model's signatures, for metadata and checks."""
    from tensorflow.core.protobuf import meta_graph_pb2

    defs = {}
    for key, names in interpreter.get_signature_list().items():
        runner = interpreter.get_signature_runner(key)
        signature_def = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
        for side, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
            for alias, detail in details.items():
                info = getattr(signature_def, side)[alias]
                info.name = detail["name"]
                info.dtype = tf.as_dtype(detail["dtype"]).as_datatype_enum
                signature = detail.get("shape_signature", detail["shape"])
                for size in signature:
                    info.tensor_shape.dim.add(size=int(size))
        defs[key] = signature_def
    return defs


def load_tflite(path: str):
    """(signature defs, {key: TfliteSignature}, interpreter) of `path/model.tflite`."""
    interpreter = tf.lite.Interpreter(model_path=os.path.join(path, TFLITE_FILE))
    interpreter.allocate_tensors()
    lock = threading.Lock()
    defs = tflite_signature_defs(interpreter)
    if not defs:
        raise ValueError(f"{os.path.join(path, TFLITE_FILE)} has no signatures; convert it with "
                         "tf.lite.TFLiteConverter.from_saved_model so serving_default is kept")
    return defs, {key: TfliteSignature(interpreter, key, lock) for key in defs}, interpreter


def load_tf1_session(path: str, signature_defs):
    """({key: SessionSignature}, session) loading `path` the way TF Serving does (a TF1 session)."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], path)
    functions = {}
    for key, signature_def in signature_defs.items():
        try:
            functions[key] = SessionSignature(session, signature_def)
        except (tf.errors.OpError, ValueError, KeyError) as error:
            _log.warning("%s: signature '%s' is not servable in a session and is skipped: %s", path, key, error)
    return functions, session


def load_signatures(path: str, signature_defs, prefer_tflite: bool = False) -> tuple:
    """(signature defs, {key: callable}, object keeping them alive, loader name)."""
    if prefer_tflite and tf.io.gfile.exists(os.path.join(path, TFLITE_FILE)):
        defs, functions, interpreter = load_tflite(path)
        return defs, functions, interpreter, "tflite"
    try:
        loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
    except Exception as error:  # noqa: BLE001  (any TF2 import failure: try TF Serving's way)
        _log.warning("%s: tf.saved_model.load failed (%s: %s); loading it in a TF1 session as TF Serving does",
                     path, type(error).__name__, str(error)[:300])
        try:
            functions, session = load_tf1_session(path, signature_defs)
        except Exception as session_error:  # noqa: BLE001
            raise ValueError(f"neither tf.saved_model.load ({error}) nor a TF1 session ({session_error}) loads {path}") from None
        return signature_defs, functions, session, "tf1-session"
    functions = {key: loaded.signatures[key] for key in loaded.signatures.keys() if key in signature_defs}
    return signature_defs, functions, loaded, "tf2"
