"""Custom property keys and file names of the InfraValidator's `blessing` (InfraBlessing) output.

Written by components/infra_validate/executor.py, read by pipeline/run.py, history.py and
lineage.py. A module without imports, so the readers do not pay for importing TFX.
"""
from components.evaluate.keys import BLESSED_KEY  # noqa: F401  (TFX's key: 1 blessed, 0 not)

REASON_KEY = "reason"  # why not blessed (or what passed)
ENGINE_KEY = "engine"  # the serving engine the candidate ran on (tensorflow, onnx, ...)
SKEW_CHECK_KEY = "skew_check"  # passed | failed | not run | not wired
SKEW_MAX_ABS_DIFF_KEY = "skew_max_abs_diff"  # when the skew check ran
BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"  # TFX's InfraValidator marker names
REPORT_FILE = "report.json"
