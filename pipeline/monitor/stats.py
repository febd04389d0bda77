"""Training vs served statistics with TFDV, and the drift verdict per feature.

Both feature tables go through `tfdv.generate_statistics_from_dataframe`; the schema is
inferred from the training statistics and each feature gets the configured TFDV drift
comparator (`infinity_norm` = L-infinity, `jensen_shannon_divergence`); then
`tfdv.validate_statistics(served, schema, previous_statistics=training)` measures every
feature. A feature drifts when its measured distance exceeds its threshold. The `class`
feature (training labels vs served predicted classes) uses `prediction_shift_threshold`.

    results = compare(training_frame, served_frame, config)
    [r.feature for r in results if r.drift]        # e.g. ["intensity_c0"]
"""
from __future__ import annotations

import dataclasses

import numpy as np

import components.tfx_compat  # noqa: F401  (tfx.components before TFDV)
from pipeline.monitor.config import MonitorConfig

_COMPARATOR_FIELDS = {"l_infinity": "infinity_norm", "jensen_shannon": "jensen_shannon_divergence"}


@dataclasses.dataclass
class FeatureResult:
    feature: str
    kind: str  # numeric | categorical
    comparator: str
    threshold: float
    distance: float | None  # None: TFDV could not measure it (e.g. a feature missing on one side)
    drift: bool
    training: dict
    served: dict
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare(training, served, config: MonitorConfig) -> list[FeatureResult]:
    """One FeatureResult per monitored column present in the training table."""
    import tensorflow_data_validation as tfdv

    training_stats = tfdv.generate_statistics_from_dataframe(training)
    served_stats = tfdv.generate_statistics_from_dataframe(served)
    schema = tfdv.infer_schema(training_stats)
    kinds = {}
    for column in training.columns:
        numeric = training[column].dtype.kind in "fiu"
        kinds[column] = "numeric" if numeric else "categorical"
        rule = config.rule_for(column, numeric)
        comparator = getattr(tfdv.get_feature(schema, column).drift_comparator, _COMPARATOR_FIELDS[rule.comparator])
        comparator.threshold = rule.threshold
    anomalies = tfdv.validate_statistics(served_stats, schema, previous_statistics=training_stats)
    measured = {info.path.step[0]: info.drift_measurements[0].value for info in anomalies.drift_skew_info if info.drift_measurements}
    descriptions = {key: info.description for key, info in anomalies.anomaly_info.items()}
    results = []
    for column in training.columns:
        rule = config.rule_for(column, kinds[column] == "numeric")
        distance = measured.get(column)
        note = descriptions.get(column, "")
        if column not in served.columns:
            note = note or "missing in served traffic"
        results.append(FeatureResult(
            feature=column, kind=kinds[column], comparator=rule.comparator, threshold=rule.threshold,
            distance=None if distance is None else float(distance),
            drift=distance is not None and distance > rule.threshold or column not in served.columns,
            training=summary(training[column], kinds[column]),
            served=summary(served[column], kinds[column]) if column in served.columns else {},
            note=note,
        ))
    return results


def summary(values, kind: str) -> dict:
    """Count and mean/std/min/max (numeric) or value frequencies (categorical, top 20)."""
    if len(values) == 0:
        return {"count": 0}
    if kind == "numeric":
        array = np.asarray(values, dtype=np.float64)
        return {"count": int(array.size), "mean": float(array.mean()), "std": float(array.std()),
                "min": float(array.min()), "max": float(array.max())}
    counts = values.value_counts(normalize=True)
    return {"count": int(len(values)), "frequencies": {str(k): float(v) for k, v in counts.head(20).items()}}
