"""The manifest of the chosen candidate (schema and layout: serving/optimized.py).

    manifest = build_manifest(model_dir, "serving_images", best, tried, accelerators)
    serving.optimized.write_optimized(version_dir, manifest, best["candidate"].files, labels)
"""
from __future__ import annotations

import datetime
import importlib.metadata
from typing import Mapping, Sequence

from components.optimize.environment import Accelerators
from components.train.export import CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE, IMAGES_SIGNATURE, LABEL_ASSET
from serving.optimized import CLASSES_OUTPUT, ONNX_FILE, TENSORRT_PLAN_FILE

ONNX_DTYPES = {1: "float32", 2: "uint8", 6: "int32", 7: "int64", 8: "string", 10: "float16"}  # onnx.TensorProto
TENSORFLOW_ONLY = {
    EXAMPLES_SIGNATURE: "tensorflow: parses serialized tf.Example (no ONNX ops for it)",
    CLASSIFY_SIGNATURE: "tensorflow: parses serialized tf.Example (no ONNX ops for it)",
}
PREPROCESSING = {
    IMAGES_SIGNATURE: "included: the Transform's standardization of uint8 pixels (the PNG round trip, if any, is cut: it is lossless)",
}


def _tensor_specs(values) -> list[dict]:
    specs = []
    for value in values:
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        specs.append({"name": value.name, "dtype": ONNX_DTYPES.get(t.elem_type, f"onnx:{t.elem_type}"), "shape": shape})
    return specs


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions() -> dict:
    names = {"tensorflow": "tensorflow", "onnx": "onnx", "onnxruntime": "onnxruntime", "onnxruntime-gpu": "onnxruntime-gpu",
             "tf2onnx": "tf2onnx", "tensorrt": "tensorrt-cu12"}
    return {key: v for key, package in names.items() if (v := _version(package)) is not None}


def build_manifest(model_dir: str, signature: str, best: Mapping, tried: Sequence[Mapping], accelerators: Accelerators) -> dict:
    """The manifest dict for `best` (a passing gate_candidates result); write it with write_optimized."""
    import onnx

    candidate = best["candidate"]
    model = onnx.load_from_string(candidate.files[ONNX_FILE])
    io = {"inputs": _tensor_specs(model.graph.input), "outputs": _tensor_specs(model.graph.output)}
    precision = candidate.precision.lower()
    artifacts = [{"signature": signature, "format": "onnx", "file": ONNX_FILE, "precision": "fp32" if candidate.engine == "tensorrt" else precision,
                  "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None), **io}]
    if TENSORRT_PLAN_FILE in candidate.files:
        artifacts.append({"signature": signature, "format": "tensorrt_plan", "file": TENSORRT_PLAN_FILE, "precision": precision,
                          "gpu": list(accelerators.gpus), **io})
    return {
        "engine": candidate.engine,
        "precision": precision,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "artifacts": artifacts,
        "signatures": {signature: "optimized", **TENSORFLOW_ONLY},
        "preprocessing": PREPROCESSING.get(signature, "included: the signature's own graph"),
        "execution_providers": {"used": candidate.providers, "tried": sorted({p for r in tried for p in r.get("execution_providers", [])})},
        "labels": {"source": f"assets/{LABEL_ASSET}", "output": CLASSES_OUTPUT,
                   "rebuild": f"`{CLASSES_OUTPUT}` (string [N,K]) is not in the ONNX graph: each row is the label names in class-id order, as the SavedModel returns it"},
        "gates": best["gates"],
        "candidates": [{k: v for k, v in r.items() if k != "gates"} | ({"speedup": r["gates"]["speed"]["speedup"]} if "gates" in r else {}) for r in tried],
        "versions": package_versions(),
    }
