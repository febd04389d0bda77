"""ONNX export of the raw-input signatures, ONNX Runtime sessions, native TensorRT engines.

`serving_text` is exported the same way where its ops convert; the text Transform's string
ops (regex, lowercasing, splitting) have no ONNX Runtime kernels, so that export fails with
OnnxExportError naming the ops (`unsupported_ops`) and the signature stays on TensorFlow.

`serving_images` normally standardizes uint8 pixels directly, and the export starts at
its input. A model whose Transform does not publish its pixel statistics PNG-encodes and
decodes its images instead (components/train/export.py); ONNX has no PNG ops, and the
round trip is lossless, so then the export starts right after the decode. Either way the
ONNX model takes the same uint8 [N, H, W, C] `images` and returns `probabilities` float32 [N, K].

    onnx_bytes = export_onnx("model/Format-Serving")
    probs = onnxruntime_predictor(onnx_bytes)(images)           # CPU
    plan = build_tensorrt_engine(onnx_bytes, precision="FP16",  # NVIDIA GPU + tensorrt 10.x
                                 batch_sizes=(1, 8, 32), image_shape=(8, 8, 1))
"""
from __future__ import annotations

import dataclasses
import logging
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from components.optimize.parity import Predictor
from components.train.export import IMAGES_SIGNATURE, TEXT_SIGNATURE
from serving.optimized import execution_providers

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
IMAGE_DECODE_OPS = frozenset({"DecodePng", "DecodeJpeg", "DecodeImage", "DecodeBmp", "DecodeGif"})
LOOP_OPS = frozenset({"While", "StatelessWhile"})


class OnnxExportError(RuntimeError):
    """The SavedModel could not be expressed as an ONNX graph ONNX Runtime accepts.

    `unsupported_ops`: the TensorFlow ops tf2onnx could not convert (empty if it was something else).
    """

    def __init__(self, message: str, unsupported_ops: Sequence[str] = ()):
        super().__init__(message)
        self.unsupported_ops = sorted(set(unsupported_ops))


class EngineUnsupportedError(RuntimeError):
    """The requested engine/precision cannot be built with what is installed; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImagesGraph:
    """The frozen `serving_images` graph cut after the image decode: uint8 images -> probabilities."""

    graph_def: tf.compat.v1.GraphDef
    input_tensor: str
    output_tensor: str
    image_shape: tuple[int, ...]


def _called(nodes) -> set[str]:
    """Ops and functions the nodes use (a library function is called by op name or func attr)."""
    called = {node.op for node in nodes}
    for node in nodes:
        called |= {attr.func.name for attr in node.attr.values() if attr.HasField("func")}
    return called


def _functions_that_decode(library) -> set[str]:
    """Library functions that decode images, directly or through functions they call."""
    calls = {fn.signature.name: _called(fn.node_def) for fn in library.function}
    decoding = {name for name, called in calls.items() if called & IMAGE_DECODE_OPS}
    changed = True
    while changed:  # callers of decoding functions decode too
        grown = {name for name, called in calls.items() if called & decoding}
        changed = not grown <= decoding
        decoding |= grown
    return decoding


def _decoded_images_tensor(graph_def) -> str | None:
    """The uint8 batch a map_fn(decode_png) loop stacks up, or None if the graph decodes nothing."""
    decoding = _functions_that_decode(graph_def.library)
    loops = {n.name for n in graph_def.node if n.op in LOOP_OPS and n.attr["body"].func.name in decoding}
    stacks = [n.name for n in graph_def.node if n.op == "TensorListStack" and n.input[0].split(":")[0] in loops]
    if len(stacks) > 1:
        raise OnnxExportError(f"serving_images decodes images in {len(stacks)} places ({stacks}); the ONNX export needs exactly one decode to start after")
    return f"{stacks[0]}:0" if stacks else None


def _drop_unused_functions(graph_def) -> None:
    """Removes library functions the graph no longer reaches (the cut-off PNG loops)."""
    calls = {fn.signature.name: _called(fn.node_def) for fn in graph_def.library.function}
    used, frontier = set(), _called(graph_def.node) & set(calls)
    while frontier:
        used |= frontier
        frontier = set().union(*(calls[name] for name in frontier)) & set(calls) - used
    kept = [fn for fn in graph_def.library.function if fn.signature.name in used]
    del graph_def.library.function[:]
    graph_def.library.function.extend(kept)


def images_subgraph(saved_model_dir: str) -> ImagesGraph:
    """Freezes `serving_images` and cuts it after the PNG decode (see the module docstring)."""
    from tf2onnx import tf_loader

    loaded = tf.saved_model.load(saved_model_dir)
    if IMAGES_SIGNATURE not in loaded.signatures:
        raise OnnxExportError(f"{saved_model_dir} has no {IMAGES_SIGNATURE!r} signature; the ONNX export starts from it (see components/train/export.py)")
    fn = loaded.signatures[IMAGES_SIGNATURE]
    (input_spec,) = fn.structured_input_signature[1].values()
    image_shape = tuple(int(d) for d in input_spec.shape[1:])
    output_keys = sorted(fn.structured_outputs)  # fn.outputs follow tf.nest.flatten: sorted keys
    probabilities = fn.outputs[output_keys.index(OUTPUT_NAME)].name
    input_names = [t.name for t in fn.inputs if t.dtype != tf.resource]
    frozen = tf_loader.from_function(fn, input_names, [t.name for t in fn.outputs])

    cut = _decoded_images_tensor(frozen) or input_names[0]
    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.uint8, [None, *image_shape], name=INPUT_NAME)
        tf.graph_util.import_graph_def(frozen, input_map={cut: images}, name="model")
    output_tensor = f"model/{probabilities}"
    pruned = tf.compat.v1.graph_util.extract_sub_graph(graph.as_graph_def(), [output_tensor.split(":")[0]])
    _drop_unused_functions(pruned)
    return ImagesGraph(pruned, images.name, output_tensor, image_shape)


def images_subgraph_function(graph: ImagesGraph):
    """The cut graph as a TF function (uint8 images -> probabilities), e.g. to compare engines fairly."""
    wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph.graph_def, name=""), [])
    return wrapped.prune(graph.input_tensor, graph.output_tensor)


TEXT_INPUT_NAME = "text"
INPUT_NAMES = {IMAGES_SIGNATURE: INPUT_NAME, TEXT_SIGNATURE: TEXT_INPUT_NAME}


def text_subgraph(saved_model_dir: str) -> ImagesGraph:
    """Freezes `serving_text` (strings in, probabilities out; the `classes` output is dropped)."""
    from tf2onnx import tf_loader

    loaded = tf.saved_model.load(saved_model_dir)
    if TEXT_SIGNATURE not in loaded.signatures:
        raise OnnxExportError(f"{saved_model_dir} has no {TEXT_SIGNATURE!r} signature")
    fn = loaded.signatures[TEXT_SIGNATURE]
    probabilities = fn.outputs[sorted(fn.structured_outputs).index(OUTPUT_NAME)].name
    input_names = [t.name for t in fn.inputs if t.dtype != tf.resource]
    frozen = tf_loader.from_function(fn, input_names, [probabilities])
    return ImagesGraph(frozen, input_names[0], probabilities, ())


class _UnsupportedOps(logging.Handler):
    """Collects the op names tf2onnx logs as 'Unsupported ops: Counter({...})' (it does not raise)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.ops: set[str] = set()
        self.failed_nodes: set[str] = set()  # nodes whose op has a converter that failed (e.g. a lookup table)

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Unsupported ops"):
            self.ops |= set(re.findall(r"'([A-Za-z0-9_]+)'", message))
        elif message.startswith("Failed to convert node") and record.args:
            self.failed_nodes.add(str(record.args[0]).rsplit("/", 1)[-1])


def export_onnx(saved_model_dir: str, opset: int = ONNX_OPSET, signature: str = IMAGES_SIGNATURE) -> bytes:
    """A raw-input signature of a SavedModel -> serialized ONNX model.

    serving_images: `images` uint8 [N,H,W,C] -> `probabilities` f32 [N,K];
    serving_text: `text` string [N] -> `probabilities` (raises OnnxExportError naming the ops
    that have no conversion, which is the case for this project's text Transform).
    """
    import onnxruntime
    import tf2onnx

    unsupported = _UnsupportedOps()
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(unsupported)
    try:
        graph = images_subgraph(saved_model_dir) if signature == IMAGES_SIGNATURE else text_subgraph(saved_model_dir)
        model_proto, _ = tf2onnx.convert.from_graph_def(
            graph.graph_def,
            input_names=[graph.input_tensor],
            output_names=[graph.output_tensor],
            opset=opset,
            tensors_to_rename={graph.input_tensor: INPUT_NAMES[signature], graph.output_tensor: OUTPUT_NAME},
        )
    except OnnxExportError:
        raise
    except Exception as e:
        raise OnnxExportError(f"{signature} of {saved_model_dir} could not be converted to ONNX: {type(e).__name__}: {e}"[:1000], unsupported.ops) from e
    finally:
        tf2onnx_logger.removeHandler(unsupported)
    if unsupported.ops:
        failed = f"; nodes {sorted(unsupported.failed_nodes)} failed to convert" if unsupported.failed_nodes else ""
        raise OnnxExportError(f"{signature}: TensorFlow ops {sorted(unsupported.ops)} have no ONNX conversion (tf2onnx {tf2onnx.__version__}, opset {opset}){failed}; the signature stays on TensorFlow", unsupported.ops)
    onnx_bytes = model_proto.SerializeToString()
    try:  # tf2onnx keeps going past some failures; ONNX Runtime is the judge
        onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise OnnxExportError(f"the ONNX export of {signature} of {saved_model_dir} does not load in ONNX Runtime: {e}") from e
    return onnx_bytes


def onnxruntime_session(onnx_bytes: bytes, providers: Sequence[str] | None = None, threads: int = 0):
    """An ONNX Runtime session on the best available providers (TensorRT EP, CUDA EP, CPU EP).

    threads=0: ONNX Runtime's default intra-op thread count (one per physical core).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    providers = list(providers) if providers is not None else execution_providers(onnxruntime.get_available_providers())
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=providers)


def onnxruntime_predictor(onnx_bytes: bytes, threads: int = 0, providers: Sequence[str] | None = None) -> Predictor:
    """Raw inputs (uint8 images or strings) -> probabilities with ONNX Runtime (CPU EP unless providers say)."""
    session = onnxruntime_session(onnx_bytes, providers or ["CPUExecutionProvider"], threads)
    (inp,) = session.get_inputs()
    dtype = np.uint8 if inp.type == "tensor(uint8)" else object
    return lambda batch: session.run([OUTPUT_NAME], {inp.name: np.asarray(batch, dtype)})[0]


# ---- Native TensorRT (NVIDIA GPU, `tensorrt` 10.x; see requirements-gpu.txt) ----


def build_tensorrt_engine(onnx_bytes: bytes, *, precision: str, batch_sizes: Sequence[int], image_shape: Sequence[int]) -> bytes:
    """ONNX -> serialized TensorRT engine (a `.plan`) for batches min(batch_sizes)..max(batch_sizes).

    FP32 and FP16 only: TensorRT deprecated implicit INT8 calibration in 10.1 and removed it,
    and the FP16 builder flag, in 11.x (both now need a Q/DQ or mixed-precision ONNX model).
    """
    import tensorrt as trt

    settings = tensorrt_build_settings(precision, batch_sizes, image_shape, builder_flags=dir(trt.BuilderFlag), tensorrt_version=trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OnnxExportError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    for flag in settings["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *settings["profile"])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; its log above says why")
    return bytes(plan)


def tensorrt_build_settings(precision: str, batch_sizes: Sequence[int], image_shape: Sequence[int], *, builder_flags: Sequence[str], tensorrt_version: str) -> dict:
    """What build_tensorrt_engine asks TensorRT for: builder flags and the (min, opt, max) input shapes.

    Pure (no GPU needed), so the arguments are unit-tested. Raises EngineUnsupportedError for
    INT8 (needs a Q/DQ model) and for FP16 on TensorRT 11+ (no BuilderFlag.FP16).

        tensorrt_build_settings("FP16", (1, 32), (8, 8, 1), builder_flags=["FP16"], tensorrt_version="10.16")
        # {"flags": ["FP16"], "profile": ((1, 8, 8, 1), (32, 8, 8, 1), (32, 8, 8, 1))}
    """
    if precision == "INT8":
        raise EngineUnsupportedError("native TensorRT INT8 needs an explicitly quantized (Q/DQ) ONNX model and TensorRT's explicit quantization, which this component does not build; the ONNX Runtime INT8 candidate covers INT8")
    if precision == "FP16" and "FP16" not in builder_flags:
        raise EngineUnsupportedError(f"tensorrt {tensorrt_version} has no BuilderFlag.FP16 (removed in TensorRT 11); install the tensorrt-cu12 10.x pin from requirements-gpu.txt or use precision FP32")
    shape = tuple(int(d) for d in image_shape)
    low, high = min(batch_sizes), max(batch_sizes)
    return {"flags": ["FP16"] if precision == "FP16" else [], "profile": ((low, *shape), (high, *shape), (high, *shape))}


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _cuda_call(result):
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {err}")
    return values[0] if values else None


def tensorrt_predictor(plan: bytes) -> Predictor:
    """uint8 images -> probabilities with a serialized TensorRT engine (TensorRT 10 tensor API)."""
    import tensorrt as trt

    cudart = _cudart()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    classes = int(engine.get_tensor_shape(OUTPUT_NAME)[-1])

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.uint8)
        out = np.empty((len(images), classes), np.float32)
        d_in = _cuda_call(cudart.cudaMalloc(images.nbytes))
        d_out = _cuda_call(cudart.cudaMalloc(out.nbytes))
        stream = _cuda_call(cudart.cudaStreamCreate())
        try:
            _cuda_call(cudart.cudaMemcpy(d_in, images.ctypes.data, images.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            context.set_input_shape(INPUT_NAME, images.shape)
            context.set_tensor_address(INPUT_NAME, int(d_in))
            context.set_tensor_address(OUTPUT_NAME, int(d_out))
            if not context.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            _cuda_call(cudart.cudaStreamSynchronize(stream))
            _cuda_call(cudart.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
            cudart.cudaStreamDestroy(stream)
        return out

    return predict
