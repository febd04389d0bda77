"""The monitor's outputs: a terminal table, report.json and a self-contained report.html.

The HTML reuses the run report's template (pipeline/report/html.py) and Matplotlib
helpers (pipeline/report/plots.py): per feature, training vs served histograms (or value
frequencies side by side) and the class distribution (training labels vs predictions).

    print(format_table(report))
    paths = write_reports(report, frames, "runs/monitor/digits/20260101T000000Z")
"""
from __future__ import annotations

import json
import os

import numpy as np

from pipeline.report import html
from pipeline.report.plots import _new_figure, figure_png


def format_table(report: dict) -> str:
    rows = [("feature", "comparator", "threshold", "distance", "status", "training", "served")]
    for r in report["features"]:
        distance = "n/a" if r["distance"] is None else f"{r['distance']:.4f}"
        rows.append((r["feature"], r["comparator"], f"{r['threshold']:g}", distance, "DRIFT" if r["drift"] else "ok",
                     _short(r["training"]), _short(r["served"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    head = (f"model {report['model_name']!r} version {report['version']} (run {report['run_id']}): "
            f"{report['served_examples']} served vs {report['training_examples']} training examples")
    verdict = {"drift": f"DRIFT in {', '.join(report['drifted_features'])}", "no_drift": "no drift",
               "insufficient_traffic": f"insufficient traffic ({report['served_examples']} < min_requests {report['min_requests']}): not judged"}
    return "\n".join([head, *lines, f"mean confidence {report['mean_confidence']:.4f}" if report["mean_confidence"] is not None else "",
                      f"result: {verdict[report['status']]}"])


def _short(summary: dict) -> str:
    if not summary or not summary.get("count"):
        return "-"
    if "mean" in summary:
        return f"mean {summary['mean']:.3g} sd {summary['std']:.3g}"
    top = sorted(summary["frequencies"].items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k}:{v:.2f}" for k, v in top)


def write_reports(report: dict, training_frame, served_frame, report_dir: str) -> dict:
    """Writes report.json and report.html into `report_dir`; returns their paths."""
    os.makedirs(report_dir, exist_ok=True)
    paths = {"json": os.path.join(report_dir, "report.json"), "html": os.path.join(report_dir, "report.html")}
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with open(paths["html"], "w") as f:
        f.write(render_html(report, training_frame, served_frame))
    return paths


def render_html(report: dict, training_frame, served_frame) -> str:
    status = {"drift": "failed", "no_drift": "ok", "insufficient_traffic": "warning"}[report["status"]]
    header = html.Safe(
        f"<h1>Served traffic vs training: {html.esc(report['model_name'])} version {html.esc(report['version'])}</h1>"
        f"<p class='sub'>{html.badge(status)} {html.esc(report['status'].replace('_', ' '))}; "
        f"{html.esc(report['served_examples'])} served examples since {html.esc(report['since'] or 'the first log')}, "
        f"{html.esc(report['training_examples'])} training examples (run {html.esc(report['run_id'])})</p>")
    rows, classes = [], []
    for r in report["features"]:
        rows.append((r["feature"], r["comparator"], r["threshold"], r["distance"], html.badge("failed" if r["drift"] else "ok"),
                     _short(r["training"]), _short(r["served"]), r["note"]))
        classes.append("fail" if r["drift"] else "pass")
    table = html.table(["feature", "comparator", "threshold", "distance", "status", "training", "served", "TFDV"], rows, classes)
    plots = []
    for r in report["features"]:
        if r["feature"] in served_frame.columns:
            png = _feature_png(r["feature"], training_frame[r["feature"]], served_frame[r["feature"]], r["kind"])
            plots.append(html.subsection(f"plot-{r['feature']}", r["feature"], html.png_img(png, f"{r['feature']} training vs served")))
    sections = [("features", "Features", table), ("plots", "Training vs served", html.Safe("".join(plots)))]
    return html.page(f"monitor {report['model_name']} v{report['version']}", header, sections)


def _feature_png(name: str, training, served, kind: str) -> bytes:
    fig = _new_figure(7.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    if kind == "numeric":
        values = np.concatenate([np.asarray(training, float), np.asarray(served, float)])
        bins = np.histogram_bin_edges(values, bins=30)
        ax.hist(np.asarray(training, float), bins=bins, density=True, alpha=0.55, label="training")
        ax.hist(np.asarray(served, float), bins=bins, density=True, alpha=0.55, label="served")
        ax.set_ylabel("density")
    else:
        t, s = training.value_counts(normalize=True), served.value_counts(normalize=True)
        keys = sorted(set(t.index) | set(s.index), key=str)[:40]
        x = np.arange(len(keys))
        ax.bar(x - 0.2, [t.get(k, 0.0) for k in keys], 0.4, label="training")
        ax.bar(x + 0.2, [s.get(k, 0.0) for k in keys], 0.4, label="served")
        ax.set_xticks(x, [str(k) for k in keys], rotation=45 if len(keys) > 12 else 0)
        ax.set_ylabel("fraction")
    ax.set_title(name if name != "class" else "class: training labels vs served predictions", parse_math=False)
    ax.legend()
    return figure_png(fig)
