"""The Trainer's `model_run` folder layout (a module without imports, for the readers).

Written by components/train/trainer.py; read by the infra validator's skew check,
pipeline/run.py, record.py, lineage.py and bench/scale.py.
"""
TRAINED_MODEL_FILE = "model.keras"  # the trained Keras model (before the serving export)
TRAIN_SUMMARY_FILE = "train_summary.json"  # strategy, steps, precision, timings, final metrics
HISTORY_FILE = "history.json"  # per-epoch Keras history
