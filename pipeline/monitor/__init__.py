"""`python -m pipeline monitor`: drift and skew checks of served traffic against the training data.

    python -m pipeline monitor --config configs/digits_cnn.yaml --request-log runs/request_log
"""
from pipeline.monitor.command import cli

__all__ = ["cli"]
