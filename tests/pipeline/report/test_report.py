"""Run report: page structure, embedded PNGs, escaping, atomic writes, the CLI, and a
real render of the page in headless Chromium (skipped, with the reason, without it)."""
from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.report import cli, plots, record_path, render_report, report_path, sanitize_run_id, save_record

TFX_RUN_ID = "2026-11-22T01:02:03.123456"
HOSTILE = "<script>alert(1)</script>"
LABELS = [str(d) for d in range(9)] + [HOSTILE]
SECTIONS = ["header", "components", "training", "test", "confusion-matrix", "per-class", "augmentation",
            "thresholds", "optimizer", "infra", "pushed", "lineage"]
CHROMIUM_APT = "apt-get update && apt-get install -y chromium"


class ReportParser(HTMLParser):
    """Collects tags, text and table rows per element id (innermost section/header/div wins)."""

    CONTAINERS = {"section", "header", "div"}

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.text: dict[str, str] = {}
        self.rows: dict[str, list[tuple[str, list[str]]]] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._row: tuple[str, list[str]] | None = None
        self._cell: list[str] | None = None

    def _current(self) -> str | None:
        return next((i for _, i in reversed(self._stack) if i), None)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag in self.CONTAINERS:
            self._stack.append((tag, attrs.get("id")))
        elif tag == "tr":
            self._row = (attrs.get("class") or "", [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in self.CONTAINERS and self._stack and self._stack[-1][0] == tag:
            self._stack.pop()
        elif tag == "td" and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self.rows.setdefault(self._current(), []).append(self._row)
            self._row = None

    def handle_data(self, data):
        for _, element_id in self._stack:
            if element_id:
                self.text[element_id] = self.text.get(element_id, "") + data
        if self._cell is not None:
            self._cell.append(data)


def parse(path: str) -> tuple[str, ReportParser]:
    with open(path, encoding="utf-8") as f:
        page = f.read()
    parser = ReportParser()
    parser.feed(page)
    return page, parser


def write_preview_png(path: str) -> str:
    """A grid of real handwritten digits (scikit-learn's copy of UCI optdigits), upscaled."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:32]  # 8x8, values 0..16
    tiles = np.pad(255 - (images / 16.0 * 255).astype(np.uint8), ((0, 0), (1, 1), (1, 1)), constant_values=255)
    grid = tiles.reshape(4, 8, 10, 10).transpose(0, 2, 1, 3).reshape(40, 80)  # 4 rows x 8 digits
    Image.fromarray(grid).resize((640, 320), Image.NEAREST).save(path)
    return path


def full_record(preview_png: str) -> dict:
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(30, 40, size=10)) + rng.integers(0, 3, size=(10, 10))
    epochs = 8
    loss = 2.3 * np.exp(-0.45 * np.arange(epochs))
    return {
        "pipeline_name": "digits",
        "run_id": TFX_RUN_ID,
        "started_at": "2026-11-22T01:02:03Z",
        "duration_s": 312.4,
        "config_path": "configs/digits_cnn.yaml",
        "config_hash": "9f2c4e1ab0d37e55",
        "git_commit": "7575cfa0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6",
        "status": "succeeded",
        "components": [
            {"name": "ImportExampleGen", "status": "cached"},
            {"name": "StatisticsGen", "status": "cached"},
            {"name": "SchemaGen", "status": "cached"},
            {"name": "ExampleValidator", "status": "cached"},
            {"name": "Transform", "status": "ran"},
            {"name": "Trainer", "status": "ran"},
            {"name": "Evaluator", "status": "ran"},
            {"name": "InfraValidator", "status": "skipped"},
            {"name": "Pusher", "status": "ran"},
        ],
        "training": {
            "history": {
                "loss": loss.tolist(),
                "accuracy": (1 - 0.9 * np.exp(-0.6 * np.arange(epochs))).tolist(),
                "val_loss": (loss * 1.1 + 0.05).tolist(),
                "val_accuracy": (0.97 - 0.85 * np.exp(-0.55 * np.arange(epochs))).tolist(),
            },
            "model_name": "digits_cnn",
            "hparams": {"learning_rate": 0.001, "batch_size": 64, "dropout": 0.25, "note": HOSTILE},
            "precision": "float32",
            "epochs": epochs,
            "steps": 180,
        },
        "test": {"split": "test", "accuracy": 0.9472, "num_examples": int(matrix.sum()),
                 "confusion_matrix": matrix.tolist(), "label_names": LABELS},
        "augmentation_preview_png": preview_png,
        "thresholds": [
            {"metric": "sparse_categorical_accuracy", "value": 0.9472, "bound": 0.9, "direction": ">=", "passed": True},
            {"metric": "loss", "value": 0.21, "bound": 0.3, "direction": "<=", "passed": True},
            {"metric": "sparse_categorical_accuracy", "value": -0.012, "bound": -0.01, "direction": "change",
             "passed": False},
        ],
        "blessed": False,
        "optimizer": {"status": "skipped", "reason": "TF 2.21 has no TF-TRT; nothing to optimize on CPU",
                      "target": "tensorrt"},
        "infra": {"status": "skipped", "reason": "no TF Serving binary or Docker engine on this machine"},
        "pushed": None,
    }


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    record = full_record(write_preview_png(str(folder / "augmentation_preview.png")))
    path = render_report(record, str(folder / "report.html"))
    page, parser = parse(path)
    return path, page, parser


@pytest.fixture(scope="module")
def minimal_report(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("min") / "report.html")
    path = render_report({"pipeline_name": "digits", "run_id": TFX_RUN_ID}, out)
    page, parser = parse(path)
    return path, page, parser


def test_full_record_fills_every_section(full_report):
    _, _, parser = full_report
    assert set(SECTIONS) <= parser.ids
    for section in SECTIONS:
        assert "not available" not in parser.text.get(section, ""), f"section {section}: {parser.text.get(section)}"
    header = parser.text["header"]
    assert "digits" in header and TFX_RUN_ID in header and "succeeded" in header and "not blessed" in header
    assert "not pushed" in parser.text["pushed"]
    component_rows = {cells[0]: cells[1] for _, cells in parser.rows["components"]}
    assert component_rows["Trainer"] == "ran" and component_rows["InfraValidator"] == "skipped"


def test_every_image_is_an_embedded_png_of_sensible_size(full_report):
    _, _, parser = full_report
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 3, "training curves, confusion matrix, augmentation preview"
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert attrs.get("alt")
        picture = Image.open(io.BytesIO(base64.b64decode(attrs["src"][len(prefix):], validate=True)))
        assert picture.format == "PNG"
        assert 200 <= picture.width <= 3000 and 150 <= picture.height <= 3000, picture.size
        assert np.asarray(picture.convert("L")).std() > 5, "image is blank"


def test_minimal_record_says_why_each_section_is_missing(minimal_report):
    _, _, parser = minimal_report
    assert set(SECTIONS) <= parser.ids
    assert "digits" in parser.text["header"] and TFX_RUN_ID in parser.text["header"]
    for section in set(SECTIONS) - {"header", "test", "lineage"}:
        assert "not available: " in parser.text[section], section
    assert "the run record has no 'git_commit'" not in parser.text["lineage"]  # lineage lists facts, marks gaps per row
    assert not [attrs for tag, attrs in parser.tags if tag == "img"]


@pytest.mark.parametrize("which", ["full_report", "minimal_report"])
def test_page_loads_nothing_from_elsewhere(which, request):
    _, page, parser = request.getfixturevalue(which)
    assert not [tag for tag, _ in parser.tags if tag in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in parser.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), f"<{tag} {name}={value[:60]}>"
    assert "http://" not in page and "https://" not in page


def test_record_text_is_escaped(full_report):
    _, page, parser = full_report
    assert HOSTILE not in page
    assert html.escape(HOSTILE) in page
    per_class_labels = [cells[0] for _, cells in parser.rows["per-class"]]
    assert HOSTILE in per_class_labels  # the parser unescapes: the text survived intact


def test_per_class_and_accuracy_derived_from_confusion_matrix(tmp_path):
    matrix = [[5, 1, 0], [2, 4, 0], [0, 0, 0]]
    record = {"pipeline_name": "p", "run_id": "r", "test": {"confusion_matrix": matrix, "label_names": ["cat", "dog", "emu"]}}
    _, parser = parse(render_report(record, str(tmp_path / "report.html")))
    rows = {cells[0]: cells[1:] for _, cells in parser.rows["per-class"]}
    assert rows["cat"] == ["0.7143", "0.8333", "0.7692", "6"]
    assert rows["dog"] == ["0.8", "0.6667", "0.7273", "6"]
    assert rows["emu"] == ["n/a", "n/a", "n/a", "0"]  # never predicted, no examples
    facts = {cells[0]: cells[1] for _, cells in parser.rows["test"]}
    assert facts["accuracy"] == "0.75" and facts["examples"] == "12"
    assert "derived from the confusion matrix" in parser.text["per-class"]


def test_threshold_rows_are_marked_pass_or_fail(full_report):
    _, _, parser = full_report
    rows = parser.rows["thresholds"]
    assert [cls for cls, _ in rows] == ["pass", "pass", "fail"]
    assert [cells[-1] for _, cells in rows] == ["pass", "pass", "fail"]


def test_a_malformed_field_costs_only_its_own_section(tmp_path):
    record = {
        "pipeline_name": "p", "run_id": "r",
        "components": [{"name": "Trainer", "status": "failed"}],
        "training": {"history": "not a dict"},
        "test": {"confusion_matrix": [[1, 2], [3]], "label_names": ["a", "b"]},
        "augmentation_preview_png": "missing/preview.png",
    }
    _, parser = parse(render_report(record, str(tmp_path / "report.html")))
    assert "not available: training curves: 'history' in training should be a dict" in parser.text["training"]
    assert "must be square" in parser.text["confusion-matrix"]
    assert "not found: " + str(tmp_path / "missing" / "preview.png") in parser.text["augmentation"]
    assert "not available" not in parser.text["components"]


def test_training_curves_find_accuracy_under_its_keras_name():
    def width(history):
        return Image.open(io.BytesIO(plots.training_curves_png(history))).width

    loss_only = width({"loss": [1.0, 0.5]})
    both = width({"loss": [1.0, 0.5], "val_sparse_categorical_accuracy": [0.5, None]})  # None: a missing epoch
    assert both > 1.6 * loss_only, "the accuracy panel is missing"
    with pytest.raises(ValueError, match="no loss or accuracy series"):
        plots.training_curves_png({"precision": [0.1]})


def test_non_png_preview_is_refused(tmp_path):
    (tmp_path / "preview.png").write_bytes(b"GIF89a not a png")
    record = {"pipeline_name": "p", "run_id": "r", "augmentation_preview_png": "preview.png"}
    _, parser = parse(render_report(record, str(tmp_path / "report.html")))
    assert "is not a PNG file" in parser.text["augmentation"]


@pytest.mark.parametrize("record, problem", [
    ({"pipeline_name": "digits"}, "'run_id'"),
    ({"run_id": "r", "pipeline_name": "  "}, "'pipeline_name'"),
    (["not", "a", "dict"], "must be a dict"),
])
def test_missing_required_fields_are_named(record, problem, tmp_path):
    with pytest.raises(ValueError, match=problem):
        render_report(record, str(tmp_path / "report.html"))
    assert not os.listdir(tmp_path)


def test_write_is_atomic(tmp_path, monkeypatch):
    out = str(tmp_path / "reports" / "report.html")
    render_report({"pipeline_name": "first", "run_id": "r"}, out)
    render_report({"pipeline_name": "second", "run_id": "r"}, out)
    assert os.listdir(tmp_path / "reports") == ["report.html"]  # no temp files left behind
    assert "second" in open(out, encoding="utf-8").read()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)  # fault injection: the rename step fails
    with pytest.raises(OSError, match="disk full"):
        render_report({"pipeline_name": "third", "run_id": "r"}, out)
    assert os.listdir(tmp_path / "reports") == ["report.html"]
    assert "second" in open(out, encoding="utf-8").read()


def test_run_ids_become_safe_folder_names():
    assert sanitize_run_id(TFX_RUN_ID) == "2026-11-22T01_02_03.123456"
    assert sanitize_run_id("../../etc/passwd") == "etc_passwd"
    folder = os.path.join("runs", "reports", "2026-11-22T01_02_03.123456")
    assert record_path("runs", TFX_RUN_ID) == os.path.join(folder, "run_record.json")
    assert report_path("runs", TFX_RUN_ID) == os.path.join(folder, "report.html")
    for bad in ["", "..", "/", "-- "]:
        with pytest.raises(ValueError, match="no letters or digits"):
            sanitize_run_id(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_sanitised_run_ids_are_safe_and_stable(run_id):
    try:
        safe = sanitize_run_id(run_id)
    except ValueError:
        return
    assert safe[0].isascii() and safe[0].isalnum()
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in safe)
    assert sanitize_run_id(safe) == safe


def test_cli_rerenders_the_report_and_lists_known_runs(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    record = {"pipeline_name": "digits", "run_id": TFX_RUN_ID,
              "test": {"confusion_matrix": np.eye(3, dtype=np.int64) * 4}}
    saved = save_record(runs, record)  # numpy values are stored as plain JSON
    assert json.load(open(saved))["test"]["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]

    for run_id in (TFX_RUN_ID, sanitize_run_id(TFX_RUN_ID)):
        assert cli([run_id, "--runs-dir", runs]) == 0
        out = capsys.readouterr().out.strip()
        assert out == report_path(runs, TFX_RUN_ID) and os.path.isfile(out)
        assert any(tag == "img" for tag, _ in parse(out)[1].tags)

    assert cli(["2020-01-01T00:00:00", "--runs-dir", runs]) == 1
    err = capsys.readouterr().err
    assert "no run record for run id '2020-01-01T00:00:00'" in err and f"  {TFX_RUN_ID}" in err
    assert cli(["anything", "--runs-dir", str(tmp_path / "empty")]) == 1
    assert "No reports/*/run_record.json under" in capsys.readouterr().err
    assert cli(["--help"]) == 0


def test_report_renders_in_headless_chromium(full_report, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(f"chromium is not installed (Debian: `{CHROMIUM_APT}`); the static HTML checks above still ran")
    path, _, _ = full_report
    shot = tmp_path / "screenshot.png"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000", f"file://{path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert shot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 10, "screenshot is blank"
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 80).sum() > 2000, "no coloured pixels: badges and plots did not render"
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    orange = (red > 220) & (green > 90) & (green < 170) & (blue < 80)  # Matplotlib's validation curve, #ff7f0e
    assert orange.sum() > 300, "the embedded training-curves PNG was not drawn"
