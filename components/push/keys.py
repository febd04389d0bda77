"""Custom property keys of the AtomicPusher's `pushed_model` output (PushedModel artifact).

Written by components/push/executor.py, read by pipeline/run.py, history.py and lineage.py.
A module without imports, so the readers do not pay for importing TFX.
"""
PUSHED_KEY = "pushed"  # 1 pushed (or already pushed), 0 not pushed
PUSHED_VERSION_KEY = "pushed_version"
PUSHED_DESTINATION_KEY = "pushed_destination"  # the version directory
ALREADY_PUSHED_KEY = "already_pushed"  # 1 when this model already was that version (a rerun)
NOT_PUSHED_REASON_KEY = "not_pushed_reason"
MODEL_NAME_KEY = "model_name"
