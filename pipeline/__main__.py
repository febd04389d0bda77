"""`python -m pipeline <command>`: run, models, and the operations commands.

Exit codes of `run`: 0 ok, 1 a component failed, 2 usage/config error,
3 the model was not blessed (a gate failed), 4 data anomalies stopped the run,
75 another run of the same pipeline holds its lock.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline run", description="Run the TFX pipeline of a config file.")
    ap.add_argument("--config", required=True, help="YAML config, e.g. configs/digits_cnn.yaml")
    ap.add_argument("--summary-json", help="write the run summary as JSON here")
    _add_verbosity(ap)
    args = ap.parse_args(argv)
    from pipeline import logs

    logs.configure(args.verbosity)
    from pipeline.config import ConfigError, load_config, make_output_dirs
    from components.ingest.sources import DataSourceError

    try:
        cfg = load_config(args.config)
        make_output_dirs(cfg)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from pipeline.run import EXIT_DATA_ANOMALIES, EXIT_FAILED, EXIT_LOCKED, EXIT_NOT_BLESSED, PipelineRunError, format_summary, run_pipeline
    from components.validate.executor import DataAnomaliesError

    from pipeline.lock import PipelineLocked, pipeline_lock

    code = 0
    try:
        # One run of a pipeline at a time (the scheduler hands its lock over via $PIPELINE_LOCK_FD).
        with pipeline_lock(cfg["pipeline_name"], os.path.join(cfg["runs_dir"], "locks")):
            summary = run_pipeline(cfg)
    except PipelineLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except (ConfigError, DataSourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PipelineRunError as e:
        summary = e.summary
        cause = _root_cause(e.cause)
        code = EXIT_DATA_ANOMALIES if isinstance(cause, DataAnomaliesError) else EXIT_FAILED
        summary["error"] = str(cause)
        print(f"\nerror: {cause}", file=sys.stderr)
        if args.verbosity == "verbose":
            import traceback

            traceback.print_exception(e.cause)
    if code == 0 and not summary["blessed"]:
        code = EXIT_NOT_BLESSED
    summary["exit_code"] = code
    try:
        from pipeline.record import build_record, save_and_render

        summary["report"] = save_and_render(cfg["runs_dir"], build_record(summary, cfg))
    except Exception as e:  # a report problem must not hide the run's outcome
        print(f"warning: could not write the run report: {e}", file=sys.stderr)
    print(format_summary(summary))
    if summary.get("report"):
        print(f"  report: {summary['report']}")
    if args.summary_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.summary_json)), exist_ok=True)
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=2)
    return code


def _root_cause(e: BaseException) -> BaseException:
    seen = set()
    while (e.__cause__ or e.__context__) and id(e) not in seen:
        seen.add(id(e))
        nxt = e.__cause__ or e.__context__
        if type(nxt).__module__.startswith(("components", "pipeline")) or not type(e).__module__.startswith(("components", "pipeline")):
            e = nxt
        else:
            break
    return e


def _models(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline models", description="List registered models and their hyperparameters.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from models import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2, default=str))
    else:
        for name, hp in sorted(models.items()):
            print(f"{name:22s} " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    return 0


def _add_verbosity(ap: argparse.ArgumentParser) -> None:
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quiet", dest="verbosity", action="store_const", const="quiet", help="warnings and errors only (CI)")
    g.add_argument("--verbose", dest="verbosity", action="store_const", const="verbose", help="all framework logs")
    ap.set_defaults(verbosity="normal")


def _lazy(module: str):
    def call(argv):
        import importlib

        return importlib.import_module(module).cli(argv)

    return call


COMMANDS = {
    "run": _run,
    "models": _models,
    "report": _lazy("pipeline.report"),
    "runs": _lazy("pipeline.history"),
    "schedule": _lazy("pipeline.schedule"),
    "validate": _lazy("pipeline.validate_cmd"),
    "lineage": _lazy("pipeline.lineage"),
    "compile": _lazy("pipeline.compile"),
    "monitor": _lazy("pipeline.monitor"),
    "train-workers": _lazy("pipeline.train_workers"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        bad = argv[0] if argv and argv[0] not in ("-h", "--help") else None
        print(("unknown command '%s'. " % bad if bad else "") + "usage: python -m pipeline {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        return 2 if bad or not argv else 0
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
