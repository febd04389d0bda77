"""Original vs optimized inference: latency and throughput, as ratios measured in one run.

On a GPU machine with TF-TRT or TensorRT it times the original SavedModel against the
optimized engine. Anywhere else it prints why it cannot (the detected reason) and times
what the ModelOptimizer attaches on CPU: ONNX Runtime (CPU EP) FP32 and INT8 (static QDQ,
calibrated on the digits images) against TensorFlow, for a digits-sized CNN (8x8x1, 10
classes) - ONNX Runtime on CPU, NOT TensorRT. Timing is components/optimize/timing.py, the
same code as the optimizer's speed gate.

    .venv/bin/python bench/tensorrt.py [--latency-iters 300] [--throughput-batch 256] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

# Python puts this script's folder first on sys.path, where this file would shadow the real
# `tensorrt` package; the repository root goes there instead.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.optimize.environment import detect_accelerators  # noqa: E402
from components.optimize.timing import time_engines  # noqa: E402  (the optimizer's own speed-gate timing)
from components.train.export import export_serving_model  # noqa: E402

IMAGE_SHAPE = (8, 8, 1)


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None], data.target


def digits_cnn(images: np.ndarray, labels: np.ndarray):
    """A digits-sized CNN, briefly trained so that the parity numbers mean something."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.astype("float32") / 255.0, labels, epochs=5, batch_size=64, verbose=0)
    return model


def print_table(rows: dict[str, dict], baseline: str) -> None:
    keys = list(next(iter(rows.values())))
    print(f"{'engine':<48}" + "".join(f"{k:>26}" for k in keys))
    for name, row in rows.items():
        cells = []
        for k in keys:
            ratio = row[k] / rows[baseline][k]
            cells.append(f"{row[k]:>14.3f} ({ratio:5.2f}x)")
        print(f"{name:<48}" + "".join(f"{c:>26}" for c in cells))
    print(f"(ratios are against '{baseline}'; for latency lower is better, for images/s higher is better)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-iters", type=int, default=300)
    parser.add_argument("--throughput-batch", type=int, default=256)
    parser.add_argument("--throughput-seconds", type=float, default=3.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    accelerators = detect_accelerators()
    print(f"[bench tensorrt] detected: {accelerators.describe()}")
    images, labels = digits()
    timing = dict(latency_iters=args.latency_iters, throughput_batch=args.throughput_batch, throughput_seconds=args.throughput_seconds)
    results = {"detected": accelerators.to_dict(), "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}

    with tempfile.TemporaryDirectory() as tmp:
        saved_model = export_serving_model(digits_cnn(images, labels), os.path.join(tmp, "model"), image_shape=IMAGE_SHAPE, label_names=[str(d) for d in range(10)])
        from components.optimize.parity import check_parity, saved_model_predictor

        original, _ = saved_model_predictor(saved_model, "serving_images")
        baseline = "TF SavedModel serving_images (as TF Serving runs it)"
        engines = {baseline: original}

        if accelerators.tf_trt_ready or accelerators.tensorrt_ready:
            candidate, label = optimized_engine(saved_model, images, accelerators, tmp)
            candidates = {label: candidate}
        elif accelerators.onnx_ready:
            print("[bench tensorrt] no TensorRT here, so no TensorRT numbers. Measuring ONNX Runtime on CPU instead (NOT TensorRT).")
            from components.optimize.onnx_export import export_onnx, images_subgraph, images_subgraph_function, onnxruntime_predictor

            from components.optimize.precision import quantize_int8

            same_graph = images_subgraph_function(images_subgraph(saved_model))
            engines["TF, same graph as the ONNX model (no PNG round trip)"] = lambda x: same_graph(tf.constant(x)).numpy()
            fp32 = export_onnx(saved_model)
            candidates = {"ONNX Runtime CPU EP FP32 (NOT TensorRT)": onnxruntime_predictor(fp32),
                          "ONNX Runtime CPU EP INT8 QDQ (NOT TensorRT)": onnxruntime_predictor(quantize_int8(fp32, images[:512]))}
        else:
            print("[bench tensorrt] neither TensorRT nor tf2onnx/onnxruntime is available; only the TF baseline is measured.")
            candidates = {}
        results["parity"] = {}
        for label, candidate in candidates.items():
            engines[label] = candidate
            parity = check_parity(original, candidate, images[:512], min_top1_agreement=0.995, max_prob_diff=0.05, compared=label)
            print(f"[bench tensorrt] {parity.describe()}")
            results["parity"][label] = parity.to_dict()
        rows = time_engines(engines, images, **timing)
    print_table(rows, baseline)
    results.update(rows=rows, load_average_after=os.getloadavg())
    print(f"[bench tensorrt] load average before/after: {results['load_average_before'][0]:.1f}/{results['load_average_after'][0]:.1f} on {os.cpu_count()} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def optimized_engine(saved_model: str, images: np.ndarray, accelerators, tmp: str):
    """The GPU path: TF-TRT (FP16) if TensorFlow has it, else a native TensorRT FP16 engine."""
    from components.optimize.eval_data import EvalInputs

    if accelerators.tf_trt_ready:
        from components.optimize.parity import saved_model_predictor
        from components.optimize.trt import convert_with_tf_trt

        serialized = np.array([b""] * len(images), dtype=object)  # only serving_images is timed
        out = convert_with_tf_trt(saved_model, os.path.join(tmp, "trt"), precision="FP16", batch_sizes=(1, 256), eval_inputs=EvalInputs(serialized, images), calibration_examples=1, signatures=("serving_images",))
        return saved_model_predictor(out, "serving_images")[0], "TF-TRT FP16 serving_images"
    from components.optimize.onnx_export import build_tensorrt_engine, export_onnx, tensorrt_predictor

    plan = build_tensorrt_engine(export_onnx(saved_model), precision="FP16", batch_sizes=(1, 256), image_shape=IMAGE_SHAPE)
    return tensorrt_predictor(plan), "TensorRT FP16 engine (native)"


if __name__ == "__main__":
    sys.exit(main())
