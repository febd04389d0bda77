"""InfraValidator: real model-server subprocesses, real gRPC stubs, a real TFX pipeline + MLMD."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store

from components.tfx_compat import tfx
from components.push import AtomicPusher
from components.infra_validate.component import InfraValidator
from components.infra_validate.config import parse_config
from components.infra_validate.executor import run_infra_validation
from components.infra_validate.warmup import read_eval_sample, read_warmup_requests

TIMEOUT = 180  # generous: the server imports TensorFlow on a shared 2-core machine


def _run_pipeline(tmp_path, synthetic, candidate: str):
    """Importers -> InfraValidator -> AtomicPusher; returns (store, serving model base)."""
    standard = tfx.types.standard_artifacts

    def importer(name, uri, artifact_type, **kw):
        return tfx.dsl.Importer(source_uri=uri, artifact_type=artifact_type, **kw).with_id(f"import_{name}")

    model = importer("model", synthetic[candidate], standard.Model)
    examples = importer("examples", synthetic["examples"], standard.Examples, properties={"split_names": '["eval"]'})
    transform_graph = importer("transform_graph", synthetic["transform_graph"], standard.TransformGraph)
    model_run = importer("model_run", synthetic["model_run"], standard.ModelRun)
    # The Evaluator's verdict is not under test here: import a positive one.
    evaluated = importer("blessing", synthetic["model_run"], standard.ModelBlessing, custom_properties={"blessed": 1})
    infra = InfraValidator(
        model=model.outputs["result"], examples=examples.outputs["result"],
        transform_graph=transform_graph.outputs["result"], model_run=model_run.outputs["result"],
        config={"enabled": True, "make_warmup": True, "timeout_seconds": TIMEOUT}, model_name="digits",
    ).with_id("InfraValidator")
    serving_base = str(tmp_path / "serving")
    pusher = AtomicPusher(
        model=infra.outputs["validated_model"], model_blessing=evaluated.outputs["result"],
        infra_blessing=infra.outputs["blessing"], serving_base=serving_base, model_name="digits",
    ).with_id("Pusher")
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite"))
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="infra-validation-test", pipeline_root=str(tmp_path / "root"),
        components=[model, examples, transform_graph, model_run, evaluated, infra, pusher],
        metadata_connection_config=metadata,
    ))
    return metadata_store.MetadataStore(metadata), os.path.join(serving_base, "digits")


def _props(artifact) -> dict:
    return {k: getattr(v, v.WhichOneof("value")) for k, v in artifact.custom_properties.items()}


def test_good_model_is_blessed_and_pushed_with_warmup(tmp_path, synthetic):
    store, model_base = _run_pipeline(tmp_path, synthetic, "good")
    (blessing,) = store.get_artifacts_by_type("InfraBlessing")
    props = _props(blessing)
    assert props["blessed"] == 1, props["reason"]
    assert props["skew_check"] == "passed" and props["skew_max_abs_diff"] < 1e-5
    assert props["engine"] in ("embedded", "tensorflow_model_server")
    assert os.path.isfile(os.path.join(blessing.uri, "INFRA_BLESSED"))
    (pushed,) = store.get_artifacts_by_type("PushedModel")
    assert _props(pushed)["pushed"] == 1

    (version,) = os.listdir(model_base)
    logs = read_warmup_requests(os.path.join(model_base, version))
    sample = read_eval_sample(synthetic["eval_files"], 8)
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request for log in logs}
    assert sorted(requests) == ["serving_default", "serving_images"]
    images = tf.make_ndarray(requests["serving_images"].inputs["images"])
    assert images.dtype == np.uint8 and images.shape == (8, 8, 8, 1)
    np.testing.assert_array_equal(images, sample.raw)
    assert list(tf.make_ndarray(requests["serving_default"].inputs["examples"])) == sample.serialized


def test_skewed_model_is_not_blessed_and_not_pushed(tmp_path, synthetic):
    store, model_base = _run_pipeline(tmp_path, synthetic, "skewed")
    props = _props(store.get_artifacts_by_type("InfraBlessing")[0])
    assert props["blessed"] == 0 and props["skew_check"] == "failed"
    assert props["skew_max_abs_diff"] > 1e-2
    assert "training/serving skew" in props["reason"]
    pushed = _props(store.get_artifacts_by_type("PushedModel")[0])
    assert pushed["pushed"] == 0 and "infra validation did not bless" in pushed["not_pushed_reason"]
    assert not os.path.exists(model_base) or not os.listdir(model_base)


def test_missing_signature_is_rejected_with_the_servers_answer(tmp_path, synthetic):
    out = tmp_path / "out"
    result = run_infra_validation(
        os.path.join(synthetic["no_images"], "Format-Serving"), synthetic["eval_files"],
        {"make_warmup": False, "timeout_seconds": TIMEOUT}, "digits", output_model_dir=str(out),
    )
    assert not result["blessed"]
    assert result["reason"].startswith("Predict serving_images: the server answered"), result["reason"]
    assert "serving_images" in result["reason"].split("answered", 1)[1]
    assert not out.exists()


def test_model_that_cannot_load_is_rejected_with_server_log(tmp_path, synthetic):
    broken = tmp_path / "broken"
    shutil.copytree(os.path.join(synthetic["good"], "Format-Serving"), broken)
    shutil.rmtree(broken / "variables")  # the graph loads, its weights are gone
    result = run_infra_validation(str(broken), synthetic["eval_files"], {"timeout_seconds": TIMEOUT}, "digits")
    assert not result["blessed"]
    assert "could not load the model" in result["reason"] or "exited with code" in result["reason"], result["reason"]
    assert "model server log (last lines):" in result["reason"]


@pytest.mark.parametrize("bad, message", [
    ({"timeout": 5}, "unknown infra validation key 'timeout'"),
    ({"timeout_seconds": 0}, "'timeout_seconds' has bad value 0"),
    ({"skew_atol": -1}, "'skew_atol' has bad value -1"),
])
def test_bad_config_is_refused_when_the_pipeline_is_built(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_config(bad)


def test_disabled_passes_the_model_through(tmp_path, synthetic):
    out = tmp_path / "out"
    result = run_infra_validation(os.path.join(synthetic["good"], "Format-Serving"), synthetic["eval_files"],
                                  {"enabled": False}, "digits", output_model_dir=str(out))
    assert result["blessed"] and "disabled" in result["reason"]
    assert (out / "saved_model.pb").is_file() and not (out / "assets.extra").exists()
