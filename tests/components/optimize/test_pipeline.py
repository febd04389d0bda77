"""ModelOptimizer in a real TFX pipeline: Importers -> ModelOptimizer, LocalDagRunner, SQLite MLMD."""
import json
import os

import pytest
from ml_metadata.metadata_store import metadata_store

from components.tfx_compat import tfx
from components.optimize import OPTIMIZED_MODEL_KEY, OPTIMIZER_PROPERTY, ModelOptimizer, OptimizeConfigError

from serving import optimized

from tests.components.optimize.helpers import tree_bytes


def importers(model_uri, examples_uri):
    model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=tfx.types.standard_artifacts.Model).with_id("import_model")
    examples = tfx.dsl.Importer(
        source_uri=examples_uri,
        artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": '["eval"]'},  # as ExampleGen records it
    ).with_id("import_examples")
    return model, examples


def test_bad_config_fails_at_pipeline_construction(model_uri, examples_uri):
    model, examples = importers(model_uri, examples_uri)
    with pytest.raises(OptimizeConfigError, match="optimize.precision: got 'FP8'"):
        ModelOptimizer(model=model.outputs["result"], examples=examples.outputs["result"], optimize_config={"precision": "FP8"})


def test_pipeline_run_records_the_outcome_in_mlmd(tmp_path, model_uri, examples_uri, saved_model_dir, accelerators):
    model, examples = importers(model_uri, examples_uri)
    optimizer = ModelOptimizer(model=model.outputs["result"], examples=examples.outputs["result"], optimize_config={"engine": "auto", "parity_examples": 32, "min_speedup": 0.0, "timing_seconds": 0.2})
    metadata_path = str(tmp_path / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="optimize-test",
        pipeline_root=str(tmp_path / "root"),
        components=[model, examples, optimizer],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
    outputs = [a for a in store.get_artifacts_by_type("Model") if OPTIMIZER_PROPERTY in a.custom_properties]
    assert len(outputs) == 1, "exactly one Model artifact (the optimizer's output) carries the optimizer property"
    artifact = outputs[0]
    assert OPTIMIZED_MODEL_KEY in artifact.uri
    result = json.loads(artifact.custom_properties[OPTIMIZER_PROPERTY].string_value)
    with open(os.path.join(artifact.uri, "optimizer.json")) as f:
        assert json.load(f) == result
    if accelerators.tf_trt_ready or accelerators.tensorrt_ready:
        assert result["status"] in ("optimized", "kept_original", "parity_failed"), result
    else:  # ONNX Runtime on CPU (the speed requirement is off in this test: min_speedup 0)
        assert result["status"] == "optimized" and result["engine"] == "onnxruntime", result
        version = os.path.join(artifact.uri, "Format-Serving")
        assert optimized.load_optimized(version)["gates"]["passed"] is True
        files = tree_bytes(version)
        assert {k: v for k, v in files.items() if not k.startswith(optimized.OPTIMIZED_DIR)} == tree_bytes(saved_model_dir)
