"""HeldOutEvaluator: accuracy, confusion matrix and per-class metrics on the never-seen test split."""
from components.evaluate.heldout.component import HeldOutEvaluator, HeldOutReport  # noqa: F401
