"""`python -m serving export-triton`: a pushed version's optimized artifact as a Triton model repository.

    python -m serving export-triton --serving_base runs/serving --model digits --out triton_repo
    tritonserver --model-repository triton_repo          # NVIDIA Triton Inference Server

writes (Triton's layout; https://github.com/triton-inference-server/server docs/user_guide/model_repository.md)

    triton_repo/digits/config.pbtxt      platform onnxruntime_onnx (or tensorrt_plan), max_batch_size,
                                         dynamic_batching, inputs/outputs from the manifest
    triton_repo/digits/labels.txt        label names; `label_filename` of the probabilities output
    triton_repo/digits/3/model.onnx      (or model.plan with --artifact tensorrt_plan)

Only an artifact whose manifest passed its gates is exported (serving.optimized.load_optimized);
the `classes` string output is not in the graph: Triton's classification extension
(`class_count` in a request) returns label names from `labels.txt` instead.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid

from serving import optimized

LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.pbtxt"
# manifest dtype -> Triton DataType (model_config.proto)
TRITON_DTYPES = {"uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16",
                 "float32": "TYPE_FP32", "string": "TYPE_STRING"}
# artifact format -> (Triton platform, Triton backend, file name Triton looks for)
TRITON_PLATFORMS = {"onnx": ("onnxruntime_onnx", "onnxruntime", "model.onnx"), "tensorrt_plan": ("tensorrt_plan", "tensorrt", "model.plan")}
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_QUEUE_DELAY_MICROS = 1000


class TritonExportError(ValueError):
    """The version cannot be exported; the message says why and what to do."""


def latest_version(model_dir: str) -> int:
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit() and os.path.isdir(os.path.join(model_dir, name))]
    if not versions:
        raise TritonExportError(f"{model_dir} has no version directories (all-digit names); push a model first")
    return max(versions)


def _tensor(spec: dict, batched: bool, label_file: str | None = None) -> str:
    shape = spec["shape"][1:] if batched else spec["shape"]
    dims = ", ".join(str(d) for d in shape) or "1"  # Triton wants at least one dim; a scalar per row is [1]
    extra = f'\n    label_filename: "{label_file}"' if label_file else ""
    return f'  {{\n    name: "{spec["name"]}"\n    data_type: {TRITON_DTYPES[spec["dtype"]]}\n    dims: [ {dims} ]{extra}\n  }}'


def model_config(model: str, artifact: dict, *, max_batch_size: int, queue_delay_micros: int, label_output: str = "probabilities") -> str:
    """config.pbtxt text for one artifact (Triton's ModelConfig text proto)."""
    for spec in (*artifact["inputs"], *artifact["outputs"]):
        if spec["dtype"] not in TRITON_DTYPES:
            raise TritonExportError(f"tensor {spec['name']!r} has dtype {spec['dtype']!r}, which Triton's config cannot name")
    platform, backend, file_name = TRITON_PLATFORMS[artifact["format"]]
    batched = all(spec["shape"] and spec["shape"][0] == -1 for spec in (*artifact["inputs"], *artifact["outputs"]))
    inputs = ",\n".join(_tensor(s, batched) for s in artifact["inputs"])
    outputs = ",\n".join(_tensor(s, batched, LABELS_FILE if s["name"] == label_output else None) for s in artifact["outputs"])
    lines = [f'name: "{model}"', f'platform: "{platform}"', f'backend: "{backend}"', f'default_model_filename: "{file_name}"',
             f"max_batch_size: {max_batch_size if batched else 0}", f"input [\n{inputs}\n]", f"output [\n{outputs}\n]"]
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_micros}\n}}")
    return "\n".join(lines) + "\n"


def export_triton(serving_base: str, model: str, out: str, *, version: int | None = None, artifact_format: str = "onnx",
                  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, queue_delay_micros: int = DEFAULT_QUEUE_DELAY_MICROS) -> str:
    """Writes `<out>/<model>/` (config, labels, `<version>/model.*`); returns the version directory written."""
    from serving.server.paths import check_model_name  # validates the name before it becomes a path

    try:
        check_model_name(model)
    except Exception as error:  # noqa: BLE001  (ServingError: the message names the rule)
        raise TritonExportError(str(getattr(error, "message", error))) from None
    if max_batch_size < 1 or queue_delay_micros < 0:
        raise TritonExportError("--max_batch_size must be >= 1 and --max_queue_delay_microseconds >= 0")
    model_dir = os.path.join(serving_base, model)
    if not os.path.isdir(model_dir):
        raise TritonExportError(f"{model_dir} does not exist; give --serving_base (the pusher's base) and --model")
    version = latest_version(model_dir) if version is None else version
    version_dir = os.path.join(model_dir, str(version))
    try:
        manifest = optimized.load_optimized(version_dir)
    except optimized.ManifestError as error:
        raise TritonExportError(f"version {version} of {model}: {error}") from None
    if manifest is None:
        raise TritonExportError(f"version {version} of {model} carries no optimized artifact ({optimized.manifest_path(version_dir)}); "
                                "run the pipeline with the ModelOptimizer (optimize: engine auto) and push again")
    found = [a for a in manifest["artifacts"] if a["format"] == artifact_format]
    if not found:
        have = sorted({a["format"] for a in manifest["artifacts"]})
        raise TritonExportError(f"version {version} of {model} has no {artifact_format} artifact (it has {have})")
    artifact = found[0]
    config = model_config(model, artifact, max_batch_size=max_batch_size, queue_delay_micros=queue_delay_micros)
    labels = optimized.read_labels(version_dir, manifest)
    target = os.path.join(out, model)
    os.makedirs(target, exist_ok=True)
    staging = os.path.join(target, f".tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(staging)
    try:
        shutil.copyfile(optimized.artifact_path(version_dir, artifact), os.path.join(staging, TRITON_PLATFORMS[artifact_format][2]))
        final = os.path.join(target, str(version))
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(staging, final)  # Triton never sees half a version directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace(os.path.join(target, LABELS_FILE), "\n".join(labels) + "\n")
    _replace(os.path.join(target, CONFIG_FILE), config)
    return final


def _replace(path: str, text: str) -> None:
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving export-triton", description=__doc__.split("\n")[0])
    parser.add_argument("--serving_base", required=True, help="the pusher's base directory (holds <model>/<version>/)")
    parser.add_argument("--model", required=True, help="model name (directory under --serving_base; also Triton's model name)")
    parser.add_argument("--version", type=int, default=None, help="version to export (default: the latest)")
    parser.add_argument("--out", required=True, help="Triton model repository to write into (created if missing)")
    parser.add_argument("--artifact", choices=sorted(TRITON_PLATFORMS), default="onnx",
                        help="onnx (Triton onnxruntime backend, any machine) or tensorrt_plan (Triton tensorrt backend; "
                             "only where the optimizer built a plan, for the same GPU and TensorRT version)")
    parser.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="Triton max_batch_size")
    parser.add_argument("--max_queue_delay_microseconds", type=int, default=DEFAULT_QUEUE_DELAY_MICROS,
                        help="dynamic_batching max_queue_delay_microseconds")
    args = parser.parse_args(argv)
    try:
        written = export_triton(args.serving_base, args.model, args.out, version=args.version, artifact_format=args.artifact,
                                max_batch_size=args.max_batch_size, queue_delay_micros=args.max_queue_delay_microseconds)
    except (TritonExportError, OSError) as error:
        print(f"export-triton: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written} and {os.path.join(os.path.dirname(written), CONFIG_FILE)}; run: tritonserver --model-repository {args.out}")
    return 0
