"""ModelOptimizer: a TFX component between the gates (Evaluator) and the Pusher.

It hands the Pusher a Model artifact in the Trainer's layout (`<uri>/Format-Serving/`): the
original SavedModel plus, when a candidate passed parity, accuracy and speed gates, the
optimized artifact (ONNX Runtime / TensorRT) under `assets.extra/optimized/` (see
serving/optimized.py); or the TF-TRT SavedModel on TF <= 2.17 GPU machines. The outcome is
recorded in the custom property `optimizer` and in `optimizer.json`.

    optimizer = ModelOptimizer(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        model_blessing=evaluator.outputs["blessing"],
        optimize_config={"engine": "auto", "precision": "auto"},
    )
    pusher = tfx.components.Pusher(model=optimizer.outputs["optimized_model"],
                                   model_blessing=evaluator.outputs["blessing"], push_destination=...)
"""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.tfx_compat import tfx  # noqa: F401  (TFX import order; see pipeline/tfx_compat.py)
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.optimize.config import OptimizeConfig, validate_optimize_config
from components.optimize.executor import Executor
from components.optimize.spec import ModelOptimizerSpec


class ModelOptimizer(base_component.BaseComponent):
    """Attaches a gated optimized artifact to the serving model where possible; otherwise passes it through.

    Args:
      model: Channel of `Model` (SavedModel at `<uri>/Format-Serving/`, the three serving signatures).
      examples: Channel of `Examples` with a `Split-eval` split (PNG `image` or `text` feature and
        `label`), used for INT8 calibration and the parity, accuracy and speed gates.
      model_blessing: optional Channel of `ModelBlessing`; an unblessed model is passed through.
      optimize_config: the `optimize:` config section (mapping, JSON text or OptimizeConfig);
        validated here, at pipeline construction.
    """

    SPEC_CLASS = ModelOptimizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        model_blessing: types.BaseChannel | None = None,
        optimize_config: Mapping[str, Any] | str | OptimizeConfig | None = None,
    ):
        spec = ModelOptimizerSpec(
            model=model,
            examples=examples,
            model_blessing=model_blessing,
            optimize_config=validate_optimize_config(optimize_config).to_json(),
            optimized_model=types.Channel(type=standard_artifacts.Model),
        )
        super().__init__(spec=spec)
