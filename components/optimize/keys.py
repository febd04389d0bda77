"""ModelOptimizer's channel, exec-property and custom-property keys (a module without imports, for the readers).

Written by components/optimize/spec.py and executor.py, read by pipeline/run.py and lineage.py
without importing TFX.
"""
MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
MODEL_BLESSING_KEY = "model_blessing"
OPTIMIZE_CONFIG_KEY = "optimize_config"
OPTIMIZED_MODEL_KEY = "optimized_model"
OPTIMIZER_PROPERTY = "optimizer"  # string custom property on the output Model: the result JSON
