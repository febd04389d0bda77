"""Report figures, drawn with Matplotlib's Agg canvas and returned as PNG bytes.

Figures are built with `matplotlib.figure.Figure` directly, not `pyplot`: no global
figure registry, no GUI backend, safe to call from any thread, nothing to close.
Text from the run record (label names) is drawn with `parse_math=False`, so a `$` in
a label is shown as is instead of being parsed as TeX.

    png = training_curves_png({"loss": [0.9, 0.5], "val_loss": [1.0, 0.6]})
    png = confusion_matrix_png([[5, 1], [2, 4]], ["cat", "dog"])
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

from components.evaluate.metrics import check_confusion_matrix

DPI = 100
_MAX_ANNOTATED_CLASSES = 25  # beyond this, per-cell numbers are too small to read
_MAX_TICK_LABEL_CHARS = 18


def figure_png(fig) -> bytes:
    """Renders a Matplotlib figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _new_figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure  # imported lazily: only report rendering needs it

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _series(history: Mapping, key: str) -> list[float]:
    values = history[key]
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"history[{key!r}] must be a list of per-epoch numbers, got {type(values).__name__}")
    return [math.nan if v is None else float(v) for v in values]  # None (e.g. JSON null for NaN) -> gap


def _accuracy_key(history: Mapping) -> str | None:
    # Keras names the metric after how it was passed: "accuracy", "sparse_categorical_accuracy", ...
    names = {k[len("val_"):] if k.startswith("val_") else k for k in history}
    if "accuracy" in names:
        return "accuracy"
    return next((k for k in sorted(names) if k.endswith("accuracy")), None)


def training_curves_png(history: Mapping[str, Sequence[float]]) -> bytes:
    """Loss and accuracy per epoch, training and validation, as two side-by-side plots.

    `history` is Keras' `History.history`: {"loss": [...], "accuracy": [...],
    "val_loss": [...], "val_accuracy": [...]}; any series may be missing.

    Example:

        png = training_curves_png(model.fit(...).history)
    """
    if not isinstance(history, Mapping):
        raise ValueError(f"training.history must map metric names to per-epoch lists, not {type(history).__name__}")
    panels = [
        (title, key)
        for title, key in (("Loss", "loss"), ("Accuracy", _accuracy_key(history)))
        if key and (key in history or "val_" + key in history)
    ]
    if not panels:
        raise ValueError(f"training.history has no loss or accuracy series (keys: {sorted(history) or 'none'})")
    fig = _new_figure(5.2 * len(panels), 3.6)
    for i, (title, key) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for series_key, label, style in ((key, "train", "-"), ("val_" + key, "validation", "--")):
            if series_key not in history:
                continue
            values = _series(history, series_key)
            epochs = range(1, len(values) + 1)
            ax.plot(epochs, values, style, marker="o" if len(values) <= 30 else None, markersize=4, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key, parse_math=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return figure_png(fig)


def _short(name: str) -> str:
    return name if len(name) <= _MAX_TICK_LABEL_CHARS else name[: _MAX_TICK_LABEL_CHARS - 1] + "…"


def _count_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2g}"


def confusion_matrix_png(
    matrix: Sequence[Sequence[float]], label_names: Sequence[str] | None = None, title: str = "Confusion matrix"
) -> bytes:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted class).

    Each cell shows its count (up to 25 classes); axes carry the label names.

    Example:

        png = confusion_matrix_png([[5, 1], [2, 4]], ["cat", "dog"])
    """
    rows, names = check_confusion_matrix(matrix, label_names)
    k = len(rows)
    side = min(max(4.5, 0.5 * k + 2.5), 16.0)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="examples")
    ticks = list(range(k))
    tick_labels = [_short(n) for n in names]
    slanted = k > 4  # long rows of x labels would overlap
    ax.set_xticks(ticks, tick_labels, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  parse_math=False)
    ax.set_yticks(ticks, tick_labels, parse_math=False)
    ax.tick_params(labelsize=10 if k <= 30 else max(4, 300 / k))  # keep 100 class names apart
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, parse_math=False)
    if k <= _MAX_ANNOTATED_CLASSES:
        peak = max(max(r) for r in rows) or 1.0
        for i in range(k):
            for j in range(k):
                dark = rows[i][j] > peak / 2  # white text on dark cells, black on light ones
                ax.text(j, i, _count_text(rows[i][j]), ha="center", va="center",
                        fontsize=9 if k <= 12 else 7, color="white" if dark else "black")
    return figure_png(fig)
