"""`python -m serving serve`: run the embedded server (or exec tensorflow_model_server).

    python -m serving serve --model_name digits --model_base_path runs/serving/digits \\
        --port 8500 --rest_api_port 8501

On start it prints one line `serving: grpc=HOST:PORT rest=HOST:PORT models=[...]`;
SIGTERM or Ctrl-C stops it gracefully (in-flight requests finish) with exit code 0.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from serving.server.options import add_arguments, options_from_args
from serving.server.tfs_flags import ignored_flags_given, log_ignored_flags


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving serve",
        description="TF Serving-compatible model server (gRPC PredictionService/ModelService + REST).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.version:  # tensorflow_model_server --version
        from importlib import metadata

        print(f"TensorFlow ModelServer: embedded (TF Serving API {metadata.version('tensorflow-serving-api')})\n"
              f"TensorFlow Library: {metadata.version('tensorflow')}")
        return 0
    try:
        options = options_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if options.engine == "tfserving":  # the real binary honours the flags this server ignores: pass them on
        from serving.server.tfserving_engine import EngineNotInstalled, exec_model_server

        extra = [f"--{flag.name}={str(value).lower() if isinstance(value, bool) else value}"
                 for flag, value in ignored_flags_given(args)]
        try:
            exec_model_server(options, extra)
        except (EngineNotInstalled, ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    log_ignored_flags(args)
    # These import TensorFlow (seconds): only after the flags are known to be good.
    from serving.server.errors import ServingError
    from serving.server.server import ModelServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ModelServer(options)
    try:
        server.start()
    except (ServingError, ValueError, OSError, RuntimeError) as error:
        print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
        server.stop(grace=0)
        return 2
    host = options.host
    rest = f"{host}:{server.rest_port}" if server.rest_port else "off"
    # One parseable line: scripts started with --port=0 / --rest_api_port=-1 read the ports here.
    print(f"serving: grpc={host}:{server.grpc_port} rest={rest} models={server.manager.model_names}", flush=True)
    ready, why = server.ready()
    if not ready:  # keep serving: a good push or a reload can still make it ready
        print(f"warning: not ready (health NOT_SERVING): {why}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0
