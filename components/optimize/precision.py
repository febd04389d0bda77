"""Reduced-precision ONNX models: FP16 (GPU) and INT8 static quantization (CPU and GPU).

    int8 = quantize_int8(onnx_bytes, eval_inputs.images[:512])    # calibrated on eval images
    fp16 = convert_fp16(onnx_bytes)                                 # inputs/outputs keep their types
    why = fp16_unavailable(onnxruntime.get_available_providers())   # None on a CUDA machine

INT8 is ONNX Runtime's static quantization in the QDQ format (weights and activations int8,
per-channel weights), with activation ranges calibrated (MinMax) on real eval inputs; the
model's uint8 input and float32 output keep their types. Softmax nodes stay float: ORT
quantizes a Softmax output with a fixed 1/256 scale, so its rows would sum to 255/256 and
the served `probabilities` would no longer be probabilities.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def fp16_unavailable(available_providers: Sequence[str]) -> str | None:
    """Why an FP16 candidate is not built here, or None if a GPU provider can run it."""
    if any(p in available_providers for p in GPU_PROVIDERS):
        return None
    return (f"FP16 needs a GPU: ONNX Runtime offers {sorted(available_providers)} here, and its CPU EP has no fast "
            "FP16 kernels (it would insert casts to FP32 and be slower); install onnxruntime-gpu on an NVIDIA machine")


def convert_fp16(onnx_bytes: bytes) -> bytes:
    """FP32 weights and compute -> FP16, keeping the model's input and output types."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(onnx_bytes), keep_io_types=True)
    return model.SerializeToString()


class _Calibration:
    """onnxruntime.quantization.CalibrationDataReader over a fixed array of inputs."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int = 32):
        self._batches = iter([{input_name: inputs[i : i + batch_size]} for i in range(0, len(inputs), batch_size)])

    def get_next(self):
        return next(self._batches, None)


def quantize_int8(onnx_bytes: bytes, calibration_inputs: np.ndarray) -> bytes:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on `calibration_inputs`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_inputs) == 0:
        raise ValueError("INT8 calibration needs at least one eval input")
    graph = onnx.load_from_string(onnx_bytes).graph
    input_name = graph.input[0].name
    softmax_nodes = [node.name for node in graph.node if node.op_type == "Softmax"]
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (os.path.join(tmp, n) for n in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        with open(fp32, "wb") as f:
            f.write(onnx_bytes)
        quant_pre_process(fp32, prepared, skip_symbolic_shape=True)  # shape inference + graph cleanup, as ORT recommends
        quantize_static(
            prepared, int8, _Calibration(input_name, np.asarray(calibration_inputs)),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=softmax_nodes,
        )
        with open(int8, "rb") as f:
            return f.read()
