"""Resolver strategy: the latest blessed model that is not the current candidate.

TFX's LatestBlessedModelStrategy returns the candidate itself on a rerun with nothing
changed (it was blessed last time), which changes the Evaluator's inputs and defeats
caching. Feeding the Trainer's output in as `candidate` and excluding it keeps the
baseline the same as in the run that first evaluated that candidate.

    Resolver(strategy_class=LatestBlessedOtherModelStrategy,
             candidate=trainer.outputs["model"],
             model=Channel(type=Model), model_blessing=Channel(type=ModelBlessing))
"""
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

from components.evaluate.keys import BLESSED_KEY as BLESSED
from components.evaluate.keys import CURRENT_MODEL_ID_KEY as CURRENT_MODEL_ID


class LatestBlessedOtherModelStrategy(resolver.ResolverStrategy):
    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = {a.id for a in input_dict.get("candidate", [])}
        blessings = {
            b.get_int_custom_property(CURRENT_MODEL_ID): b
            for b in input_dict.get("model_blessing", [])
            if b.get_int_custom_property(BLESSED) == 1
        }
        result = {"candidate": list(input_dict.get("candidate", [])), "model": [], "model_blessing": []}
        for model in sorted(input_dict.get("model", []), key=lambda a: a.id, reverse=True):
            if model.id in blessings and model.id not in candidates:
                result["model"], result["model_blessing"] = [model], [blessings[model.id]]
                break
        return result
