"""Optimized candidates (engine x precision), their gates, and the choice among them.

Each candidate is built from the FP32 ONNX export, then gated against the original
SavedModel signature on the eval split:

* parity: top-1 agreement and max probability difference (parity.py), first `parity_examples`;
* accuracy: eval-split accuracy may drop by at most `max_accuracy_drop`;
* speed: faster than the original in-process at batch 1 (p50) AND at `timing_batch` (images/s)
  (speedup > `min_speedup`, default 1.0).

`choose` returns the passing candidate with the best geometric mean of the two speedups.

    candidates = build_candidates("onnx", config, onnx_fp32, eval_inputs, available_providers)
    results = gate_candidates(candidates, reference_predict, eval_inputs, config)
    best = choose(results)   # None: keep the original
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from components.optimize.config import OptimizeConfig
from components.optimize.eval_data import EvalInputs
from components.optimize.onnx_export import EngineUnsupportedError, build_tensorrt_engine, onnxruntime_predictor, tensorrt_predictor
from components.optimize.parity import Predictor, compare_probabilities, predict_in_batches
from components.optimize.precision import convert_fp16, fp16_unavailable, quantize_int8
from components.optimize.timing import speedups, time_engines
from serving.optimized import ONNX_FILE, TENSORRT_PLAN_FILE, execution_providers

LATENCY_ITERS = 200
ORIGINAL = "original (TF SavedModel, in-process)"


@dataclasses.dataclass
class Candidate:
    engine: str  # "onnxruntime" | "tensorrt" (what runs the artifact)
    precision: str  # FP32 | FP16 | INT8
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    predictor: Predictor | None = None
    providers: list[str] = dataclasses.field(default_factory=list)
    skipped: str | None = None  # why it was not built

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision.lower()}"


def _onnxruntime_candidate(precision: str, onnx_fp32: bytes, eval_inputs: EvalInputs, config: OptimizeConfig, available: Sequence[str]) -> Candidate:
    providers = execution_providers(available)
    candidate = Candidate("onnxruntime", precision, providers=providers)
    if precision == "FP16":
        why = fp16_unavailable(available)
        if why:
            candidate.skipped = why
            return candidate
        model = convert_fp16(onnx_fp32)
    elif precision == "INT8":
        model = quantize_int8(onnx_fp32, eval_inputs.raw()[: config.calibration_examples])
    else:
        model = onnx_fp32
    candidate.files = {ONNX_FILE: model}
    candidate.predictor = onnxruntime_predictor(model, providers=providers)
    return candidate


def _tensorrt_candidate(precision: str, onnx_fp32: bytes, eval_inputs: EvalInputs, config: OptimizeConfig) -> Candidate:
    candidate = Candidate("tensorrt", precision, providers=["TensorRT (native)"])
    try:
        plan = build_tensorrt_engine(onnx_fp32, precision=precision, batch_sizes=sorted({*config.batch_sizes, 1, config.timing_batch}), image_shape=eval_inputs.images.shape[1:])
    except EngineUnsupportedError as e:
        candidate.skipped = str(e)
        return candidate
    candidate.files = {ONNX_FILE: onnx_fp32, TENSORRT_PLAN_FILE: plan}
    candidate.predictor = tensorrt_predictor(plan)
    return candidate


def build_candidates(engine: str, config: OptimizeConfig, onnx_fp32: bytes, eval_inputs: EvalInputs, available_providers: Sequence[str]) -> list[Candidate]:
    """One candidate per precision the config asks for (AUTO: all three); unbuildable ones carry `skipped`."""
    candidates = []
    for precision in config.candidate_precisions():
        try:
            if engine == "tensorrt":
                candidates.append(_tensorrt_candidate(precision, onnx_fp32, eval_inputs, config))
            else:
                candidates.append(_onnxruntime_candidate(precision, onnx_fp32, eval_inputs, config, available_providers))
        except Exception as e:  # one precision failing (e.g. quantization) must not stop the others
            candidates.append(Candidate("tensorrt" if engine == "tensorrt" else "onnxruntime", precision, skipped=f"building it failed: {type(e).__name__}: {e}"[:1000]))
    return candidates


def accuracy_gate(reference_probs: np.ndarray, candidate_probs: np.ndarray, labels: np.ndarray | None, max_drop: float) -> dict:
    """Eval-split accuracy of both; passes if the candidate's is at most `max_drop` lower."""
    if labels is None:
        return {"passed": False, "reason": "the eval examples have no integer `label` feature, so accuracy cannot be measured"}
    original = float(np.mean(reference_probs.argmax(axis=1) == labels))
    optimized = float(np.mean(candidate_probs.argmax(axis=1) == labels))
    delta = optimized - original
    return {"split": "eval", "examples": int(len(labels)), "original": original, "optimized": optimized, "delta": delta,
            "max_drop": max_drop, "passed": bool(delta >= -max_drop - 1e-12)}


def speed_gate(original: dict, optimized: dict, large_batch: int, min_speedup: float = 1.0) -> dict:
    """Passes if the speedup is above `min_speedup` at batch 1 (p50 latency) AND at `large_batch` (images/s)."""
    ups = speedups(original, optimized, large_batch)
    return {"batch_sizes": [1, large_batch], "original": original, "optimized": optimized, "speedup": ups, "min_speedup": min_speedup,
            "rule": f"speedup > {min_speedup:g} at batch 1 (p50 latency) and at batch {large_batch} (images/s)",
            "passed": bool(all(v > min_speedup for v in ups.values()))}


def gate_candidates(candidates: Sequence[Candidate], reference: Predictor, eval_inputs: EvalInputs, config: OptimizeConfig) -> list[dict]:
    """Parity, accuracy and speed of every built candidate; one result dict per candidate."""
    inputs = eval_inputs.raw()[: config.accuracy_examples]
    labels = None if eval_inputs.labels is None else eval_inputs.labels[: config.accuracy_examples]
    batch = max(64, max(config.batch_sizes))
    reference_probs = predict_in_batches(reference, inputs, batch)
    parity_n = min(config.parity_examples, len(inputs))
    built = [c for c in candidates if c.skipped is None]
    timing = time_engines({ORIGINAL: reference, **{c.name: c.predictor for c in built}}, inputs,
                          latency_iters=LATENCY_ITERS, throughput_batch=config.timing_batch, throughput_seconds=config.timing_seconds) if built else {}
    results = []
    for c in candidates:
        result = {"engine": c.engine, "precision": c.precision, "execution_providers": c.providers}
        if c.skipped is not None:
            results.append({**result, "status": "skipped", "reason": c.skipped})
            continue
        probs = predict_in_batches(c.predictor, inputs, batch)
        parity = compare_probabilities(reference_probs[:parity_n], probs[:parity_n], min_top1_agreement=config.parity_min_top1_agreement,
                                       max_prob_diff=config.max_prob_diff_for(c.precision), compared=f"{c.name} vs the SavedModel")
        gates = {"parity": parity.to_dict(), "accuracy": accuracy_gate(reference_probs, probs, labels, config.max_accuracy_drop),
                 "speed": speed_gate(timing[ORIGINAL], timing[c.name], config.timing_batch, config.min_speedup)}
        failed = [name for name, gate in gates.items() if not gate["passed"]]
        gates["passed"] = not failed
        result.update(status="passed" if not failed else "failed", gates=gates, candidate=c)
        if failed:
            result["reason"] = f"{c.name} failed the {' and '.join(failed)} gate{'s' if len(failed) > 1 else ''}: " + _why(gates, failed)
        results.append(result)
    return results


def _why(gates: dict, failed: Sequence[str]) -> str:
    parts = []
    if "parity" in failed:
        p = gates["parity"]
        parts.append(f"top-1 agreement {p['top1_agreement']:.4f} (need >= {p['min_top1_agreement']}), max prob diff {p['max_prob_diff']:.3g} (need <= {p['max_prob_diff_bound']})")
    if "accuracy" in failed:
        a = gates["accuracy"]
        parts.append(a.get("reason") or f"eval accuracy {a['optimized']:.4f} vs {a['original']:.4f} (delta {a['delta']:+.4f}, allowed -{a['max_drop']})")
    if "speed" in failed:
        ups = gates["speed"]["speedup"]
        parts.append(f"speedup not above {gates['speed']['min_speedup']:g} at every batch size: " + ", ".join(f"{v:.2f}x at batch {k}" for k, v in ups.items()))
    return "; ".join(parts)


def choose(results: Sequence[dict]) -> dict | None:
    """The passing result with the best geometric mean of its batch-1 and large-batch speedups."""
    passing = [r for r in results if r["status"] == "passed"]
    if not passing:
        return None
    return max(passing, key=lambda r: math.prod(r["gates"]["speed"]["speedup"].values()))


def public(result: dict) -> dict:
    """A result without the in-memory candidate (what goes into optimizer.json)."""
    return {k: v for k, v in result.items() if k != "candidate"}
