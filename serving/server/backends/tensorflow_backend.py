"""The TensorFlow backend: a signature's SavedModel function (the call itself lives in signature.py)."""
from __future__ import annotations

from typing import Callable, Mapping


class TensorFlowBackend:
    """Runs a loaded SavedModel signature; `call` is `Signature.call_tensorflow`."""

    name = "tensorflow"

    def __init__(self, call: Callable[[Mapping], dict]):
        self.run = call

    def describe(self) -> str:
        return self.name
