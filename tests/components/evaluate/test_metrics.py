"""The one per-class metrics function (components/evaluate/metrics.py) against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from components.evaluate.metrics import per_class_from_confusion

# Class 2 is never predicted (precision undefined); class 3 has no examples (recall undefined).
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 0, 1]
Y_PRED = [0, 1, 0, 1, 0, 0, 1, 3, 1]


def test_matches_sklearn_with_zero_division_0():
    labels = [0, 1, 2, 3]
    matrix = confusion_matrix(Y_TRUE, Y_PRED, labels=labels).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=labels, zero_division=0.0)
    rows = per_class_from_confusion(matrix, ["a", "b", "c", "d"])  # the default is sklearn's 0.0
    np.testing.assert_allclose([r["precision"] for r in rows], precision)
    np.testing.assert_allclose([r["recall"] for r in rows], recall)
    np.testing.assert_allclose([r["f1"] for r in rows], f1)
    assert [r["support"] for r in rows] == support.tolist()


def test_undefined_ratios_can_be_none_for_display():
    matrix = confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3]).tolist()
    rows = per_class_from_confusion(matrix, zero_division=None)
    assert rows[2]["precision"] is None and rows[2]["recall"] == 0.0 and rows[2]["f1"] is None
    assert rows[3]["recall"] is None and rows[3]["precision"] == 0.0 and rows[3]["f1"] is None


def test_heldout_and_report_share_the_function():
    from components.evaluate.heldout import executor as heldout
    from pipeline.report import sections

    assert heldout.per_class_from_confusion is per_class_from_confusion
    assert sections.metrics.per_class_from_confusion is per_class_from_confusion


def test_bad_matrix_is_refused():
    with pytest.raises(ValueError, match="square"):
        per_class_from_confusion([[1, 2], [3]])
