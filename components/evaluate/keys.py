"""Custom property keys and file names of the evaluation artifacts (a module without imports, for the readers).

`BLESSED_KEY` is TFX's (tfx.components.evaluator.constants.ARTIFACT_PROPERTY_BLESSED_KEY and
CURRENT_MODEL_ID_KEY, on ModelBlessing); the infra validator's InfraBlessing uses it too.
"""
BLESSED_KEY = "blessed"  # ModelBlessing / InfraBlessing: 1 blessed, 0 not
CURRENT_MODEL_ID_KEY = "current_model_id"  # ModelBlessing: the id of the model it blesses
TEST_ACCURACY_KEY = "test_accuracy"  # HeldOutReport: accuracy on the never-seen test split
SPLIT_KEY = "split"  # HeldOutReport: the split it was computed on
HELDOUT_REPORT_FILE = "metrics.json"  # HeldOutReport: the file in its folder (accuracy, confusion matrix, per class)
