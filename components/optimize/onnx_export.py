"""ONNX export of the `serving_images` signature, ONNX Runtime on CPU, native TensorRT engines.

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
from typing import Sequence

import numpy as np
import tensorflow as tf

from components.optimize.parity import Predictor
from serving.contract import IMAGES_INPUT, IMAGES_SIGNATURE, PROBABILITIES_OUTPUT

ONNX_OPSET = 17
INPUT_NAME = IMAGES_INPUT
OUTPUT_NAME = PROBABILITIES_OUTPUT
IMAGE_DECODE_OPS = frozenset({"DecodePng", "DecodeJpeg", "DecodeImage", "DecodeBmp", "DecodeGif"})
LOOP_OPS = frozenset({"While", "StatelessWhile"})


class OnnxExportError(RuntimeError):
    """The SavedModel could not be expressed as an ONNX graph ONNX Runtime accepts."""


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


def export_onnx(saved_model_dir: str, opset: int = ONNX_OPSET) -> bytes:
    """`serving_images` of a SavedModel -> serialized ONNX model (images uint8 -> probabilities f32)."""
    import onnxruntime
    import tf2onnx

    graph = images_subgraph(saved_model_dir)
    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph.graph_def,
        input_names=[graph.input_tensor],
        output_names=[graph.output_tensor],
        opset=opset,
        tensors_to_rename={graph.input_tensor: INPUT_NAME, graph.output_tensor: OUTPUT_NAME},
    )
    onnx_bytes = model_proto.SerializeToString()
    try:  # tf2onnx keeps going past unsupported ops; ONNX Runtime is the judge
        onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise OnnxExportError(f"the ONNX export of {saved_model_dir} does not load in ONNX Runtime: {e}") from e
    return onnx_bytes


def onnxruntime_predictor(onnx_bytes: bytes, threads: int = 0) -> Predictor:
    """uint8 images -> probabilities with ONNX Runtime on CPU (threads=0: ONNX Runtime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(images, np.uint8)})[0]


# ---- Native TensorRT (NVIDIA GPU, `tensorrt` 10.x; see requirements-gpu.txt) ----


def build_tensorrt_engine(onnx_bytes: bytes, *, precision: str, batch_sizes: Sequence[int], image_shape: Sequence[int]) -> bytes:
    """ONNX -> serialized TensorRT engine (a `.plan`) for batches min(batch_sizes)..max(batch_sizes).

    FP32 and FP16 only: TensorRT deprecated implicit INT8 calibration in 10.1 and removed it,
    and the FP16 builder flag, in 11.x (both now need a Q/DQ or mixed-precision ONNX model).
    """
    import tensorrt as trt

    if precision == "INT8":
        raise EngineUnsupportedError("native TensorRT INT8 needs an explicitly quantized (Q/DQ) ONNX model, which this component does not produce; use precision FP16, or engine tf-trt for calibrated INT8")
    if precision == "FP16" and not hasattr(trt.BuilderFlag, "FP16"):
        raise EngineUnsupportedError(f"tensorrt {trt.__version__} has no BuilderFlag.FP16 (removed in TensorRT 11); install the tensorrt-cu12 10.x pin from requirements-gpu.txt or use precision FP32")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OnnxExportError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    if precision == "FP16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = tuple(int(d) for d in image_shape)
    profile.set_shape(INPUT_NAME, (min(batch_sizes), *shape), (max(batch_sizes), *shape), (max(batch_sizes), *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; its log above says why")
    return bytes(plan)


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
