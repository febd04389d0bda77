"""Shared test setup: quiet TF, CPU only, TFX stack imported in the right order."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pipeline.tfx_compat  # noqa: E402,F401  (tfx.components before TFDV)
