"""Reuses the serving tests' fixtures: real tiny SavedModels and in-process servers."""
from tests.serving.conftest import (  # noqa: F401  (pytest fixtures)
    exported, optimized_export, server, serving_backend, start_server, stubs,
)
