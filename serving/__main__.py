"""`python -m serving serve ...` runs the model server; `python -m serving predict ...` queries it.

    python -m serving serve --model_name digits --model_base_path runs/serving/digits --rest_api_port 8501
    python -m serving predict --model digits --image a.png --top_k 3
    python -m serving export-triton --serving_base runs/serving --model digits --out triton_repo
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

_COMMANDS = {"serve": "serving.server.cli", "predict": "serving.cli_predict", "export-triton": "serving.triton_export"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in _COMMANDS:
        print("usage: python -m serving {serve,predict,export-triton} [options]  (add --help after a command)", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(_COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
