"""ModelOptimizer's typed inputs, output and exec property (the TFX ComponentSpec).

    ModelOptimizerSpec(model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
                       optimize_config=validate_optimize_config({}).to_json(),
                       optimized_model=Channel(type=standard_artifacts.Model))
"""
from components.tfx_compat import tfx  # noqa: F401  (TFX import order; see components/tfx_compat.py)
from tfx import types
from tfx.types import Channel
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.optimize.keys import (EXAMPLES_KEY, MODEL_BLESSING_KEY, MODEL_KEY, OPTIMIZE_CONFIG_KEY,  # noqa: F401
                                      OPTIMIZED_MODEL_KEY, OPTIMIZER_PROPERTY)


class ModelOptimizerSpec(types.ComponentSpec):
    PARAMETERS = {
        OPTIMIZE_CONFIG_KEY: ExecutionParameter(type=str),  # OptimizeConfig.to_json()
    }
    INPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),  # Split-eval for calibration and parity
        MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {
        OPTIMIZED_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }
