"""TFMA EvalConfig from the `evaluate:` section: value thresholds, change thresholds, slices."""
from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2

from serving.contract import EXAMPLES_SIGNATURE

ACCURACY = "SparseCategoricalAccuracy"


def _value_threshold(lower=None, upper=None):
    bounds = {}
    if lower is not None:
        bounds["lower_bound"] = {"value": float(lower)}
    if upper is not None:
        bounds["upper_bound"] = {"value": float(upper)}
    return tfma.GenericValueThreshold(**bounds)


OVERALL = [tfma.SlicingSpec()]  # gates apply to the whole split; per-class slices are reported


def _gated(class_name: str, threshold: tfma.MetricThreshold) -> tfma.MetricConfig:
    return tfma.MetricConfig(
        class_name=class_name,
        per_slice_thresholds=[config_pb2.PerSliceMetricThreshold(slicing_specs=OVERALL, threshold=threshold)],
    )


def check_metric_name(name: str) -> None:
    """ValueError unless TFMA can build metric `name` the way the Evaluator will.

    TFMA resolves a MetricConfig's class_name in its own registry (`metric_types.register_metric`)
    first, then as a Keras metric (`tf_keras.metrics`); `metric_instance` is that resolution."""
    import difflib

    import tf_keras
    from tensorflow_model_analysis.metrics import metric_specs, metric_types

    try:
        metric_specs.metric_instance(config_pb2.MetricConfig(class_name=name))
        return
    except Exception as e:  # noqa: BLE001 (Keras deserialization raises ValueError, TypeError, ...)
        reason = str(e).split(". ")[0]
    known = set(metric_types.registered_metrics()) | {
        n for n, c in vars(tf_keras.metrics).items() if isinstance(c, type) and issubclass(c, tf_keras.metrics.Metric)}
    if name in known:  # a real metric that needs arguments a threshold entry cannot give
        raise ValueError(f"metric {name!r} cannot be built without arguments ({reason})")
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    raise ValueError(
        f"unknown metric {name!r}: neither a TFMA metric (tfma.metrics) nor a Keras metric class (tf_keras.metrics)"
        + (f"; did you mean {', '.join(close)}?" if close else f"; e.g. {ACCURACY}, AUC, Precision, Recall")
    )


def build_eval_config(evaluate: dict, num_classes: int) -> tfma.EvalConfig:
    accuracy_threshold = tfma.MetricThreshold(value_threshold=_value_threshold(lower=evaluate["accuracy_lower_bound"]))
    if evaluate["max_accuracy_drop"] is not None:
        accuracy_threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -float(evaluate["max_accuracy_drop"])},
            )
        )
    metrics = [_gated(ACCURACY, accuracy_threshold), tfma.MetricConfig(class_name="ExampleCount")]
    for m in evaluate["metrics"]:
        metrics.append(_gated(m["name"], tfma.MetricThreshold(value_threshold=_value_threshold(m.get("lower_bound"), m.get("upper_bound")))))
    specs = [tfma.MetricsSpec(metrics=metrics)]
    if evaluate["per_class_recall_lower_bound"] is not None:
        specs.append(
            tfma.MetricsSpec(
                metrics=[_gated("Recall", tfma.MetricThreshold(value_threshold=_value_threshold(lower=evaluate["per_class_recall_lower_bound"])))],
                binarize=tfma.BinarizationOptions(class_ids={"values": list(range(num_classes))}),
            )
        )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EXAMPLES_SIGNATURE, label_key="label", prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=["label"])],
        metrics_specs=specs,
    )
