"""`python -m pipeline monitor`: is the served traffic still like the training data?

Reads the request log (PredictionLog TFRecords written by the server's request logging)
for the config's model (`push.model_name`), finds the run that produced the served
version through MLMD lineage (pipeline/lineage.py), and compares the served examples'
features and predicted classes with that run's training split and labels (TFDV drift
comparators, thresholds from the `monitor:` config section).

Exit codes: 0 no drift (or too little traffic to judge), 1 drift beyond a threshold,
2 usage error (bad flags or config, no request log, no lineage for the served version).

    python -m pipeline monitor --config configs/digits_cnn.yaml --request-log runs/request_log --since 24h
    python -m pipeline monitor --config configs/digits_cnn.yaml --request-log runs/request_log --report-dir out/
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

EXIT_OK, EXIT_DRIFT, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline monitor",
                                     description="Compare served traffic (the request log) with the training data of the served version.")
    parser.add_argument("--config", required=True, help="the pipeline's YAML config (its monitor: section sets comparators and thresholds)")
    parser.add_argument("--request-log", required=True, help="the server's request-log directory (--request_log_dir)")
    parser.add_argument("--since", help="only requests logged since: a duration (30m, 24h, 7d) or an ISO time (default: monitor.since, else all)")
    parser.add_argument("--version", type=int, help="served version to check (default: the newest version in the log)")
    parser.add_argument("--report-dir", help="write report.json and report.html here "
                        "(default RUNS_DIR/monitor/<model>/<UTC time>)")
    return parser


def cli(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and usage errors (2)
        return int(exit_.code or 0)
    from pipeline.config import ConfigError, load_config
    from pipeline.lineage import LineageError
    from pipeline.monitor.config import MonitorConfigError, validate_monitor_config
    from pipeline.monitor.features import TrafficError

    try:
        cfg = load_config(args.config)
        config = validate_monitor_config(cfg.get("monitor"))
        report, training_frame, served_frame = run_monitor(cfg, config, args.request_log, since=args.since, version=args.version)
    except (ConfigError, MonitorConfigError, TrafficError, LineageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline.monitor.report import format_table, write_reports

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_dir = args.report_dir or os.path.join(cfg["runs_dir"], "monitor", report["model_name"], now)
    report["exit_code"] = EXIT_DRIFT if report["status"] == "drift" else EXIT_OK
    paths = write_reports(report, training_frame, served_frame, report_dir)
    print(format_table(report))
    print(f"report: {paths['html']}\n        {paths['json']}")
    return report["exit_code"]


def run_monitor(cfg: dict, config, request_log: str, *, since: str | None = None, version: int | None = None):
    """(report dict, training frame, served frame) for the config's served model."""
    from models import TOKEN_MODELS
    from pipeline.build import paths
    from pipeline.lineage import trace_version
    from pipeline.monitor import features
    from pipeline.monitor.config import parse_since
    from pipeline.monitor.stats import compare

    model_name = cfg["push"]["model_name"]
    window = since if since is not None else config.since
    since_secs = parse_since(window, dt.datetime.now(dt.timezone.utc)) if window is not None else 0
    modality = "text" if cfg["model"]["name"] in TOKEN_MODELS else "image"
    served = features.read_served(request_log, model_name, modality, since=since_secs, version=version, max_examples=config.max_examples)
    if version is None:
        version = max(served.versions)
        if len(served.versions) > 1:  # several versions answered in the window: judge the newest
            served = features.read_served(request_log, model_name, modality, since=since_secs, version=version,
                                          max_examples=config.max_examples)
    p = paths(cfg)
    facts = trace_version(p["serving_base"], model_name, version, p["metadata"])
    if not facts.get("data") or not facts["data"].get("examples_uri"):
        raise ValueError(f"the lineage of {model_name!r} version {version} has no Examples artifact; cannot find its training data")
    modality = "text" if (facts.get("training") or {}).get("model") in TOKEN_MODELS else modality
    training = features.read_training(facts["data"]["examples_uri"], modality, max_examples=config.max_examples)
    vocabulary = None
    if modality == "text" and facts.get("transform"):
        vocabulary = features.read_vocabulary(facts["transform"]["transform_graph_uri"])
    training_frame = features.feature_frame(training, vocabulary)
    served_frame = features.feature_frame(served, vocabulary)
    report = {
        "model_name": model_name, "version": version, "run_id": facts["run"]["run_id"],
        "trained_in_run": ((facts.get("training") or {}).get("run") or {}).get("run_id"),
        "examples_uri": facts["data"]["examples_uri"], "request_log": os.path.abspath(request_log),
        "since": window, "since_epoch": since_secs, "served_examples": len(served), "served_records": served.records,
        "training_examples": len(training), "skipped": dict(served.skipped), "versions_in_window": dict(served.versions),
        "min_requests": config.min_requests, "config": config.to_dict(),
        "mean_confidence": float(sum(served.confidence) / len(served.confidence)) if served.confidence else None,
    }
    if len(served) < config.min_requests:
        report.update(status="insufficient_traffic", features=[], drifted_features=[])
        return report, training_frame, served_frame
    results = compare(training_frame, served_frame, config)
    drifted = [r.feature for r in results if r.drift]
    report.update(status="drift" if drifted else "no_drift", features=[r.to_dict() for r in results], drifted_features=drifted)
    return report, training_frame, served_frame
