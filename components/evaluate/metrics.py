"""Per-class precision, recall and F1 from a confusion matrix: the project's one implementation
(the held-out evaluator, `python -m pipeline validate` and the run report all use it).

Convention (the same as scikit-learn's): `matrix[i][j]` counts examples whose true
class is `i` and whose predicted class is `j`. A ratio with a zero denominator (a class
never predicted, or without examples) is `zero_division`, as in scikit-learn's
`precision_recall_fscore_support(zero_division=...)`: 0.0 by default (sklearn's default
value; gates then treat an undefined class as failing, never as passing), None where a
reader should see "undefined" (the report shows n/a); F1 is then undefined too.

    per_class_from_confusion([[5, 1], [2, 4]], ["cat", "dog"])[0]
    # -> {"label": "cat", "precision": 0.714..., "recall": 0.833..., "f1": 0.769..., "support": 6}
"""
from __future__ import annotations

from typing import Sequence


def check_confusion_matrix(matrix, label_names: Sequence[str] | None) -> tuple[list[list[float]], list[str]]:
    """Validates a confusion matrix; returns it as floats plus label names (defaults "0".."K-1")."""
    if not isinstance(matrix, (list, tuple)) or not matrix:
        raise ValueError("confusion_matrix must be a non-empty list of rows")
    k = len(matrix)
    rows = []
    for i, row in enumerate(matrix):
        if not isinstance(row, (list, tuple)) or len(row) != k:
            size = len(row) if isinstance(row, (list, tuple)) else "no"
            raise ValueError(f"confusion_matrix must be square ({k}x{k}); row {i} has {size} entries")
        values = [float(v) for v in row]
        if any(v < 0 or v != v for v in values):
            raise ValueError(f"confusion_matrix row {i} has a negative or NaN count")
        rows.append(values)
    if label_names is None:
        names = [str(i) for i in range(k)]
    else:
        names = [str(n) for n in label_names]
        if len(names) != k:
            raise ValueError(
                f"label_names has {len(names)} names but confusion_matrix has {k} classes; "
                "give one name per class, in class-id order"
            )
    return rows, names


def _ratio(num: float, den: float, zero_division: float | None = None) -> float | None:
    return num / den if den else zero_division


def per_class_from_confusion(matrix, label_names: Sequence[str] | None = None,
                             zero_division: float | None = 0.0) -> list[dict]:
    """One `{label, precision, recall, f1, support}` dict per class; undefined ratios are `zero_division`."""
    rows, names = check_confusion_matrix(matrix, label_names)
    k = len(rows)
    result = []
    for c in range(k):
        true_positive = rows[c][c]
        predicted = sum(rows[r][c] for r in range(k))
        support = sum(rows[c])
        precision = _ratio(true_positive, predicted, zero_division)
        recall = _ratio(true_positive, support, zero_division)
        if precision is None or recall is None:
            f1 = None
        else:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result.append({"label": names[c], "precision": precision, "recall": recall, "f1": f1, "support": int(support)})
    return result


def total_from_confusion(matrix) -> int:
    """Number of examples the matrix counts."""
    rows, _ = check_confusion_matrix(matrix, None)
    return int(sum(map(sum, rows)))


def accuracy_from_confusion(matrix) -> float | None:
    """Share of examples on the diagonal; None for an all-zero matrix."""
    rows, _ = check_confusion_matrix(matrix, None)
    return _ratio(sum(rows[i][i] for i in range(len(rows))), total_from_confusion(rows))
