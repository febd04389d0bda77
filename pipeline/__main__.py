"""`python -m pipeline <command>`: run, models, and the operations commands.

Exit codes of `run`: 0 ok, 1 a component failed, 2 usage/config error,
3 the model was not blessed (a gate failed), 4 data anomalies stopped the run.
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
    from pipeline.config import ConfigError, load_config
    from components.ingest.sources import DataSourceError

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from pipeline.run import EXIT_DATA_ANOMALIES, EXIT_FAILED, EXIT_NOT_BLESSED, PipelineRunError, format_summary, run_pipeline
    from components.validate.anomalies_gate import DataAnomaliesError

    code = 0
    try:
        summary = run_pipeline(cfg)
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
    print(format_summary(summary))
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


COMMANDS = {
    "run": _run,
    "models": _models,
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
