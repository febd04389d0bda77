"""Read a TFMA evaluation: overall metrics and each failed threshold in words."""
from __future__ import annotations

import tensorflow_model_analysis as tfma


def _value(v):
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boundedValue" in v:
        return float(v["boundedValue"]["value"])
    return None


def read_evaluation(evaluation_uri: str) -> tuple[dict, list[dict]]:
    """(overall metrics of the candidate, [{metric, slice, value, bound, message}] failures)."""
    metrics = {}
    result = tfma.load_eval_result(evaluation_uri)
    for slice_key, by_output in result.slicing_metrics:
        if slice_key:  # overall slice only in the summary
            continue
        for sub in by_output.get("", {}).values():
            for name, v in sub.items():
                val = _value(v)
                if val is not None and not name.endswith("_diff"):
                    metrics[f"eval_{name}"] = val
    failures = []
    validation = tfma.load_validation_result(evaluation_uri)
    for per_slice in validation.metric_validations_per_slice:
        slice_desc = ", ".join(f"{s.column}={s.bytes_value.decode() or s.int64_value}" for s in per_slice.slice_key.single_slice_keys) or "overall"
        for f in per_slice.failures:
            failures.append(
                {
                    "metric": f.metric_key.name + (f"[class {f.metric_key.sub_key.class_id.value}]" if f.metric_key.sub_key.HasField("class_id") else "")
                    + (" (change vs baseline)" if f.metric_key.is_diff else ""),
                    "slice": slice_desc,
                    "value": _value_of(f.metric_value),
                    "bound": describe_bound(f.metric_threshold),
                    "message": f.message,
                }
            )
    return metrics, failures


def _value_of(metric_value):
    kind = metric_value.WhichOneof("type")
    if kind == "double_value":
        return metric_value.double_value.value
    if kind == "bounded_value":
        return metric_value.bounded_value.value.value
    return str(metric_value)


def describe_bound(threshold) -> str:
    parts = []
    vt, ct = threshold.value_threshold, threshold.change_threshold
    if vt.HasField("lower_bound"):
        parts.append(f">= {vt.lower_bound.value}")
    if vt.HasField("upper_bound"):
        parts.append(f"<= {vt.upper_bound.value}")
    if ct.HasField("absolute"):
        parts.append(f"change {'>=' if ct.direction == tfma.MetricDirection.HIGHER_IS_BETTER else '<='} {ct.absolute.value}")
    return " and ".join(parts) or str(threshold)
