"""Reuses the serving tests' fixtures: real tiny SavedModels and in-process servers."""
from tests.serving.conftest import exported, server, start_server, stubs  # noqa: F401  (pytest fixtures)
