"""Build the TFX pipeline from a validated config (the data flow, top to bottom).

ingest -> statistics -> schema -> validate (gate) -> transform -> train -> baseline
resolver -> evaluate (gate) + held-out test report -> optimize (TensorRT where it can run)
-> infra validation (serve it, query it, skew check, warmup requests) -> push (atomic, TF Serving layout)

    cfg = load_config("configs/digits_cnn.yaml")
    p = build_pipeline(cfg)                                   # runs here: the config's local paths
    p = build_pipeline(cfg, Target(pipeline_root="gs://b/tfx", serving_base="/gcs/b/serving",
                                   checkpoint_root="/gcs/b/tfx/checkpoints", portable_resolver=True))
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

from components.tfx_compat import tfx

from components.evaluate.baseline import LatestBlessedOtherModelStrategy
from components.evaluate.eval_config import build_eval_config
from components.evaluate.heldout import HeldOutEvaluator
from components.ingest.component import DatasetExampleGen
from components.ingest.sources import open_source
from components.optimize import ModelOptimizer
from components.push import AtomicPusher
from components.validate.component import AnomaliesGate
from components.infra_validate.component import InfraValidator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_fingerprint(*packages: str) -> str:
    """Hash of the project's Python sources, so a code change invalidates cached steps."""
    h = hashlib.sha256()
    for pkg in packages:
        for path in sorted(glob.glob(os.path.join(REPO, pkg, "**", "*.py"), recursive=True)):
            h.update(os.path.relpath(path, REPO).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the built pipeline will run; decided once, when it is built.

    None keeps the config's local paths (made absolute). An orchestrator elsewhere passes its
    own roots as they are (gs://... must not become <cwd>/gs:/...): `pipeline_root` any URI
    TFX can write, `serving_base` and `checkpoint_root` POSIX paths (checkpoints go to
    `<checkpoint_root>/<pipeline name>`). `portable_resolver` picks TFX's built-in
    LatestBlessedModelStrategy for the baseline, the only kind Kubeflow V2 compiles.
    """

    pipeline_root: str | None = None
    serving_base: str | None = None
    checkpoint_root: str | None = None
    portable_resolver: bool = False


LOCAL = Target()


def paths(cfg: dict, target: Target = LOCAL) -> dict:
    runs = os.path.abspath(cfg["runs_dir"])
    name = cfg["pipeline_name"]
    return {
        "runs": runs,
        "pipeline_root": target.pipeline_root or os.path.join(runs, "pipelines", name),
        "metadata": os.path.join(runs, "metadata.sqlite"),
        "checkpoints": os.path.join(target.checkpoint_root or os.path.join(runs, "checkpoints"), name),
        "serving_base": target.serving_base or os.path.abspath(cfg["push"]["serving_base"]),
    }


def baseline_resolver(candidate, portable: bool):
    """The Evaluator's baseline: the latest blessed model other than `candidate`.

    Kubeflow V2 compiles only TFX's built-in strategies, so `portable` uses TFX's
    LatestBlessedModelStrategy: the same baseline except that it may pick the candidate
    itself once blessed, which only matters for cached local re-runs.
    """
    model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
    model_blessing = tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing)
    if portable:
        resolver = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
                                    model=model, model_blessing=model_blessing)
    else:
        resolver = tfx.dsl.Resolver(strategy_class=LatestBlessedOtherModelStrategy, candidate=candidate,
                                    model=model, model_blessing=model_blessing)
    return resolver.with_id("BaselineResolver")


def check_data_fits_model(cfg: dict, source) -> tuple[str, list[int]]:
    """(modality, model input shape); ConfigError if the data and the model/config disagree."""
    from models import TOKEN_MODELS
    from pipeline.config import ConfigError

    model, modality = cfg["model"]["name"], source.modality
    if modality == "text":
        if model not in TOKEN_MODELS:
            raise ConfigError(
                f"config key 'model.name' has bad value {model!r}: dataset '{cfg['data']['name']}' is text, "
                f"which needs a token-id model: {', '.join(sorted(TOKEN_MODELS))}"
            )
        if cfg["train"]["augmentation"]:
            raise ConfigError("config key 'train.augmentation': image augmentation does not apply to text datasets; remove it")
        if "vocab_size" in cfg["model"]["hparams"]:
            raise ConfigError(
                "config key 'model.hparams.vocab_size': the pipeline sets it from the Transform's vocabulary; "
                "remove it and set data.text.max_tokens instead"
            )
        return modality, [cfg["data"]["text"]["sequence_length"]]
    if model in TOKEN_MODELS:
        raise ConfigError(f"config key 'model.name' has bad value {model!r}: it reads token ids, but the dataset has images")
    return modality, list(cfg["data"]["image_shape"] or source.image_shape)


def build_pipeline(cfg: dict, target: Target = LOCAL):
    """The TFX pipeline of `cfg`, with paths and the baseline resolver for where it will run."""
    p = paths(cfg, target)
    source = open_source(cfg["data"])  # validates the data before any component runs
    modality, input_shape = check_data_fits_model(cfg, source)
    label_names = list(source.label_names)
    image_shape = input_shape if modality == "image" else None
    data_cfg = dict(cfg["data"], image_shape=image_shape, code=code_fingerprint("components/ingest"))

    example_gen = DatasetExampleGen(data_config=data_cfg).with_id("ExampleGen")
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"])

    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="components.transform.preprocessing.preprocessing_fn",
        custom_config={
            "modality": modality, "image_shape": image_shape, **cfg["data"]["text"],
            "code": code_fingerprint("components/transform"),
        },
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    )
    transform.add_upstream_node(anomalies_gate)  # anomalies stop the run before Transform/Trainer

    trainer = tfx.components.Trainer(
        run_fn="components.train.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={
            "train": cfg["train"],
            "model": cfg["model"],
            "modality": modality,
            "input_shape": input_shape,
            "label_names": label_names,
            "checkpoint_root": p["checkpoints"],
            "code": code_fingerprint("components/train", "components/transform", "models"),
        },
    )
    baseline = baseline_resolver(trainer.outputs["model"], portable=target.portable_resolver)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=build_eval_config(cfg["evaluate"], len(label_names)),
        example_splits=["eval"],
    )
    heldout = HeldOutEvaluator(model=trainer.outputs["model"], examples=examples, split="test")
    optimizer = ModelOptimizer(
        model=trainer.outputs["model"],
        examples=examples,
        model_blessing=evaluator.outputs["blessing"],
        optimize_config=cfg["optimize"],
    ).with_id("ModelOptimizer")
    infra = None
    if cfg["infra_validation"]["enabled"]:  # serve the model that would be pushed, then skew-check it
        infra = InfraValidator(
            model=optimizer.outputs["optimized_model"],
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            model_run=trainer.outputs["model_run"],
            config=dict(cfg["infra_validation"], code=code_fingerprint("components/infra_validate", "serving")),
            model_name=cfg["push"]["model_name"],
        ).with_id("InfraValidator")
    pusher = AtomicPusher(
        model=infra.outputs["validated_model"] if infra else optimizer.outputs["optimized_model"],
        infra_blessing=infra.outputs["blessing"] if infra else None,
        model_blessing=evaluator.outputs["blessing"],
        serving_base=p["serving_base"],
        model_name=cfg["push"]["model_name"],
    ).with_id("Pusher")

    components = [
        example_gen, statistics_gen, schema_gen, example_validator, anomalies_gate,
        transform, trainer, baseline, evaluator, heldout, optimizer, *([infra] if infra else []), pusher,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=cfg["pipeline_name"],
        pipeline_root=p["pipeline_root"],
        components=components,
        enable_cache=cfg["enable_cache"],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(p["metadata"]),
        beam_pipeline_args=beam_args(cfg["beam_args"]),
    )


# Beam workers in other processes (multi_processing, Dataflow, Flink, Spark) unpickle TFDV
# code first; this plugin imports the TFX stack in the order it needs before any bundle runs.
BEAM_PLUGIN = "components.tfx_compat"


def beam_args(args: list[str]) -> list[str]:
    """The config's Beam arguments plus `--beam_plugin=components.tfx_compat`."""
    return list(args) + [f"--beam_plugin={BEAM_PLUGIN}"]
