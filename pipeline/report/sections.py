"""The report's sections: each turns part of the run record into HTML.

Each section renders on its own: a missing field makes it say "not available: <why>",
and a malformed one ("could not render ...") leaves the rest of the report intact, so
a report is still written for a run that failed half-way.

    page_html = build_html({"pipeline_name": "digits", "run_id": "2026-11-22T01:02:03"}, base_dir=".")
"""
from __future__ import annotations

import collections
import logging
import os
from typing import Any, Callable

from pipeline.report import metrics, plots
from pipeline.report.html import (
    Safe, badge, esc, fmt, fmt_duration, not_available, page, png_img, subsection, table,
)

_log = logging.getLogger(__name__)
_MAX_EMBEDDED_PNG_BYTES = 20 * 1024 * 1024  # keeps the page openable; a preview grid is ~100 KB
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Renderer = Callable[[dict, str], Safe]  # (data, base_dir) -> HTML


class Unavailable(Exception):
    """Raised by a section renderer when the record lacks what the section shows."""


def _field(container: Any, key: str, kind: type | tuple, where: str = "the run record") -> Any:
    """container[key], checked for type; raises Unavailable with the reason otherwise."""
    if not isinstance(container, dict) or container.get(key) is None:
        raise Unavailable(f"{where} has no '{key}'")
    value = container[key]
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise Unavailable(f"'{key}' in {where} should be a {names}, got {type(value).__name__}")
    return value


def _facts(pairs) -> Safe:
    rows = [(name, value) for name, value in pairs if value is not None]
    return table(["fact", "value"], rows) if rows else Safe("")


def _blessed_badge(blessed: bool) -> Safe:
    return badge("blessed" if blessed else "not blessed")


def _body(render: Renderer, data: dict, base_dir: str, what: str) -> Safe:
    try:
        return render(data, base_dir)
    except Unavailable as e:
        return not_available(str(e))
    except (ValueError, TypeError, KeyError, AttributeError, OSError, ImportError) as e:
        # A malformed field (or a missing matplotlib) must not cost the whole report; say what broke.
        _log.warning("report section %s could not be rendered: %r", what, e)
        return not_available(f"could not render {what}: {e}")


def _header(record: dict, base_dir: str) -> Safe:
    status = [f"status {badge(record['status'])}" if record.get("status") is not None else "status: not recorded"]
    if isinstance(record.get("blessed"), bool):
        status.append(f"model {_blessed_badge(record['blessed'])}")
    pushed = record.get("pushed")
    if isinstance(pushed, dict) and pushed.get("version") is not None:
        status.append(f"pushed version <strong>{esc(pushed['version'])}</strong>")
    elif "pushed" in record and pushed is None:
        status.append("not pushed")
    if record.get("started_at") is not None:
        status.append(f"started {esc(record['started_at'])}")
    if isinstance(record.get("duration_s"), (int, float)):
        status.append(f"took {esc(fmt_duration(record['duration_s']))}")
    return Safe(
        f"<h1>{esc(record['pipeline_name'])}</h1>"
        f'<p class="sub">run <code>{esc(record["run_id"])}</code></p>'
        f'<p class="sub">{" · ".join(status)}</p>'
    )


def _components(record: dict, base_dir: str) -> Safe:
    components = _field(record, "components", list)
    if not components:
        raise Unavailable("the run record lists no components")
    rows = [(c.get("name", "(unnamed)"), badge(c.get("status", "unknown"))) for c in components]
    counts = collections.Counter(str(c.get("status", "unknown")) for c in components)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return Safe(f'<p class="sub">{esc(summary)}</p>' + table(["component", "status"], rows))


def _training(record: dict, base_dir: str) -> Safe:
    training = _field(record, "training", dict)
    facts = _facts((k, training.get(k)) for k in ("model_name", "precision", "epochs", "steps"))
    try:
        history = _field(training, "history", dict, "training")
        curves = png_img(plots.training_curves_png(history), "training and validation loss and accuracy per epoch")
    except (Unavailable, ValueError) as e:
        curves = not_available(f"training curves: {e}")
    hparams = training.get("hparams")
    if isinstance(hparams, dict) and hparams:
        hparams_html = table(["name", "value"], sorted(hparams.items()))
    else:
        hparams_html = not_available("training has no 'hparams'")
    return Safe(facts + subsection("training-curves", "Curves", curves)
                + subsection("hparams", "Hyperparameters", hparams_html))


def _test(record: dict, base_dir: str) -> Safe:
    try:
        test = _field(record, "test", dict)
    except Unavailable as e:  # still emit both subsections, each saying why
        return Safe("".join(subsection(sid, title, not_available(str(e))) for sid, title, _ in _TEST_PARTS))
    accuracy, examples = test.get("accuracy"), test.get("num_examples")
    if test.get("confusion_matrix") is not None:
        try:
            if accuracy is None:
                accuracy = metrics.accuracy_from_confusion(test["confusion_matrix"])
            if examples is None:
                examples = metrics.total_from_confusion(test["confusion_matrix"])
        except (ValueError, TypeError):
            pass  # the confusion matrix subsection reports the problem
    facts = _facts([("split", test.get("split", "test")), ("accuracy", accuracy), ("examples", examples)])
    parts = "".join(subsection(sid, title, _body(render, test, base_dir, title)) for sid, title, render in _TEST_PARTS)
    return Safe(facts + parts)


def _confusion_matrix(test: dict, base_dir: str) -> Safe:
    matrix = _field(test, "confusion_matrix", list, "test")
    split = test.get("split", "test")
    png = plots.confusion_matrix_png(matrix, test.get("label_names"), title=f"{split} split: true vs predicted class")
    return png_img(png, f"confusion matrix on the {split} split")


def _per_class(test: dict, base_dir: str) -> Safe:
    note = ""
    if test.get("per_class") is not None:
        per_class = _field(test, "per_class", list, "test")
    elif test.get("confusion_matrix") is not None:
        per_class = metrics.per_class_from_confusion(test["confusion_matrix"], test.get("label_names"))
        note = '<p class="sub">derived from the confusion matrix (rows: true class, columns: predicted class)</p>'
    else:
        raise Unavailable("test has neither 'per_class' nor 'confusion_matrix'")
    rows = [(c.get("label"), c.get("precision"), c.get("recall"), c.get("f1"), c.get("support")) for c in per_class]
    return Safe(note + table(["class", "precision", "recall", "F1", "support"], rows))


def _augmentation(record: dict, base_dir: str) -> Safe:
    path = _field(record, "augmentation_preview_png", str)
    full = path if os.path.isabs(path) else os.path.join(base_dir, path)
    if not os.path.isfile(full):
        raise Unavailable(f"augmentation preview file not found: {full}")
    if os.path.getsize(full) > _MAX_EMBEDDED_PNG_BYTES:
        limit_mib = _MAX_EMBEDDED_PNG_BYTES // 2**20
        raise Unavailable(f"augmentation preview {full} is larger than {limit_mib} MiB; save a smaller grid")
    with open(full, "rb") as f:
        png = f.read()
    if not png.startswith(_PNG_SIGNATURE):
        raise Unavailable(f"augmentation preview {full} is not a PNG file")
    return png_img(png, "training images after augmentation")


def _thresholds(record: dict, base_dir: str) -> Safe:
    blessed = record.get("blessed")
    if isinstance(blessed, bool):
        verdict = Safe(f"<p>model {_blessed_badge(blessed)}</p>")
    else:
        verdict = not_available("the run record has no 'blessed'")
    try:
        thresholds = _field(record, "thresholds", list)
    except Unavailable as e:
        return Safe(verdict + not_available(str(e)))
    rows, classes = [], []
    for t in thresholds:
        passed = t.get("passed")
        known = isinstance(passed, bool)  # the Evaluator decides; the report does not re-judge
        rows.append((t.get("metric"), t.get("value"), t.get("direction"), t.get("bound"),
                     badge(("pass" if passed else "fail") if known else "unknown")))
        classes.append(("pass" if passed else "fail") if known else "")
    return Safe(verdict + table(["metric", "value", "direction", "bound", "result"], rows, classes))


def _outcome(key: str) -> Renderer:
    """Renderer for {status, reason, ...} outcomes (optimizer, infra validation)."""

    def render(record: dict, base_dir: str) -> Safe:
        outcome = _field(record, key, dict)
        reason = f"<p>{esc(outcome['reason'])}</p>" if outcome.get("reason") is not None else ""
        details = sorted((k, v) for k, v in outcome.items() if k not in ("status", "reason"))
        return Safe(
            f"<p>status {badge(outcome.get('status', 'unknown'))}</p>{reason}"
            + (table(["detail", "value"], details) if details else "")
        )

    return render


_OPTIMIZER_SUMMARY = (("engine", "engine"), ("precision", "precision"), ("parity_top1_agreement", "parity: top-1 agreement"),
                      ("parity_max_prob_diff", "parity: max probability difference"), ("accuracy_delta", "eval accuracy delta"))


def _optimizer(record: dict, base_dir: str) -> Safe:
    """The optimizer outcome, its headline numbers first (engine, precision, parity, accuracy delta, speedups)."""
    outcome = _field(record, "optimizer", dict)
    summary = outcome.get("summary")
    if not isinstance(summary, dict):
        return _outcome("optimizer")(record, base_dir)
    rows = [(label, summary.get(key)) for key, label in _OPTIMIZER_SUMMARY]
    rows += [(f"speedup at batch {k[len('speedup_batch'):]}", v) for k, v in summary.items() if k.startswith("speedup_batch")]
    title = "chosen artifact" if outcome.get("status") == "optimized" else "fastest candidate (not used)"
    rest = {k: v for k, v in outcome.items() if k != "summary"}
    return Safe(subsection("optimizer-summary", title, table(["number", "value"], rows)) + _outcome("optimizer")({"optimizer": rest}, base_dir))


def _pushed(record: dict, base_dir: str) -> Safe:
    if "pushed" not in record:
        raise Unavailable("the run record has no 'pushed'")
    pushed = record["pushed"]
    if pushed is None:
        why = " (the model was not blessed)" if record.get("blessed") is False else ""
        return Safe(f"<p>{badge('not pushed')}{esc(why)}</p>")
    if not isinstance(pushed, dict):
        raise Unavailable(f"'pushed' should be a dict or null, got {type(pushed).__name__}")
    return Safe(f"<p>{badge('pushed')}</p>" + _facts((k, pushed.get(k)) for k in ("model_name", "version", "path")))


def _lineage(record: dict, base_dir: str) -> Safe:
    rows = []
    for key in ("pipeline_name", "run_id", "started_at", "duration_s", "config_path", "config_hash", "git_commit"):
        value = record.get(key)
        if value is None:
            value = "not available: not in the run record"
        elif key == "duration_s" and isinstance(value, (int, float)):
            value = f"{fmt(float(value))} s ({fmt_duration(value)})"
        rows.append((key, value if isinstance(value, str) else fmt(value)))
    return table(["fact", "value"], rows)


_TEST_PARTS: list[tuple[str, str, Renderer]] = [
    ("confusion-matrix", "Confusion matrix", _confusion_matrix),
    ("per-class", "Per-class precision, recall and F1", _per_class),
]

SECTIONS: list[tuple[str, str, Renderer]] = [
    ("components", "Components", _components),
    ("training", "Training", _training),
    ("test", "Test split evaluation", _test),
    ("augmentation", "Augmentation preview", _augmentation),
    ("thresholds", "Evaluation thresholds", _thresholds),
    ("optimizer", "Inference optimizer", _optimizer),
    ("infra", "Infra validation", _outcome("infra")),
    ("pushed", "Pushed model", _pushed),
    ("lineage", "Config and lineage", _lineage),
]


def build_html(record: dict, base_dir: str) -> str:
    """The whole report page for a validated run record.

    `base_dir` resolves a relative `augmentation_preview_png` path.
    """
    return page(
        title=f"{record['pipeline_name']} run {record['run_id']}",
        header=_body(_header, record, base_dir, "header"),
        sections=[(sid, title, _body(render, record, base_dir, title)) for sid, title, render in SECTIONS],
    )
