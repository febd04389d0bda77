"""Inference optimization of the serving model (ONNX Runtime, TensorRT, TF-TRT), gated, with an
honest pass-through where nothing passes or can run.

    from components.optimize import ModelOptimizer, validate_optimize_config

    optimizer = ModelOptimizer(model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
                               model_blessing=evaluator.outputs["blessing"],
                               optimize_config=validate_optimize_config(config["optimize"]))
    pusher = Pusher(model=optimizer.outputs["optimized_model"], ...)

`ModelOptimizer` (and the TFX stack) is imported lazily, so `components.optimize.trt` can run
on its own in a TF 2.17 GPU container without TFX.
"""
from components.optimize.config import OptimizeConfig, OptimizeConfigError, validate_optimize_config

__all__ = ["ModelOptimizer", "OptimizeConfig", "OptimizeConfigError", "validate_optimize_config", "OPTIMIZED_MODEL_KEY", "OPTIMIZER_PROPERTY"]


def __getattr__(name):
    if name == "ModelOptimizer":
        from components.optimize.component import ModelOptimizer

        return ModelOptimizer
    if name in ("OPTIMIZED_MODEL_KEY", "OPTIMIZER_PROPERTY"):
        from components.optimize import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'components.optimize' has no attribute {name!r}")
