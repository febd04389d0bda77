"""serving/optimized.py: the artifact layout, the manifest schema and its validator (no TensorFlow needed)."""
import copy
import hashlib
import json
import sys

import pytest

from serving import optimized
from serving.optimized import ManifestError

LABELS = ["zero", "one", "two"]
MODEL = b"\x08\x07fake-onnx-bytes" * 10


def passing_manifest() -> dict:
    return {
        "engine": "onnxruntime",
        "precision": "int8",
        "artifacts": [{
            "signature": "serving_images", "format": "onnx", "file": "model.onnx", "precision": "int8",
            "inputs": [{"name": "images", "dtype": "uint8", "shape": [-1, 8, 8, 1]}],
            "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 3]}],
        }],
        "signatures": {"serving_images": "optimized", "serving_default": "tensorflow: parses serialized tf.Example"},
        "gates": {
            "passed": True,
            "parity": {"passed": True, "top1_agreement": 1.0, "max_prob_diff": 0.01},
            "accuracy": {"passed": True, "delta": -0.001, "max_drop": 0.005},
            "speed": {"passed": True, "speedup": {"1": 12.0, "256": 1.5}},
        },
    }


@pytest.fixture
def version(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"pb")
    written = optimized.write_optimized(str(tmp_path), passing_manifest(), {"model.onnx": MODEL}, LABELS)
    assert written["artifacts"][0]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    return tmp_path


def test_layout_is_under_assets_extra_and_round_trips(version):
    folder = version / "assets.extra" / "optimized"
    assert sorted(p.name for p in folder.iterdir()) == ["label_names.txt", "manifest.json", "model.onnx"]
    assert sorted(p.name for p in version.iterdir()) == ["assets.extra", "saved_model.pb"], "nothing else in the version changes"
    manifest = optimized.load_optimized(str(version))
    assert manifest["schema_version"] == optimized.SCHEMA_VERSION
    assert manifest["labels"] == {"file": "label_names.txt", "count": 3}
    assert optimized.read_labels(str(version), manifest) == LABELS
    (art,) = optimized.artifacts_for(manifest, "serving_images", "onnx")
    assert open(optimized.artifact_path(str(version), art), "rb").read() == MODEL
    assert optimized.artifacts_for(manifest, "serving_text") == []
    assert optimized.describe(manifest) == "onnxruntime int8 (serving_images), 12.00x at batch 1, 1.50x at batch 256"


def test_a_version_without_an_artifact_is_none(tmp_path):
    assert optimized.load_optimized(str(tmp_path)) is None and not optimized.has_optimized(str(tmp_path))


def _rewrite(version, edit):
    path = version / "assets.extra" / "optimized" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("gate", ["parity", "accuracy", "speed"])
def test_a_manifest_whose_gate_failed_is_rejected(version, gate):
    def fail(m):
        m["gates"][gate]["passed"] = False
    _rewrite(version, fail)
    with pytest.raises(ManifestError, match=f"gates: did not pass \\({gate}\\)"):
        optimized.load_optimized(str(version))


def test_writing_a_failed_manifest_is_refused_and_leaves_the_old_one(version):
    bad = passing_manifest()
    bad["gates"]["passed"] = False
    with pytest.raises(ManifestError, match="gates"):
        optimized.write_optimized(str(version), bad, {"model.onnx": b"other"}, LABELS)
    assert optimized.load_optimized(str(version))["precision"] == "int8"
    assert not [p for p in (version / "assets.extra").iterdir() if p.name != "optimized"], "no staging folder left behind"


def test_corrupt_or_missing_files_are_rejected(version):
    model = version / "assets.extra" / "optimized" / "model.onnx"
    model.write_bytes(MODEL[:-1] + b"X")
    with pytest.raises(ManifestError, match="does not match its manifest"):
        optimized.load_optimized(str(version))
    assert optimized.load_optimized(str(version), verify_files=False) is not None  # schema-only check
    model.unlink()
    with pytest.raises(ManifestError, match="model.onnx is missing"):
        optimized.load_optimized(str(version))


def test_bad_json_and_label_count_are_rejected(version):
    (version / "assets.extra" / "optimized" / "label_names.txt").write_text("zero\none\n")
    with pytest.raises(ManifestError, match="2 label names, the manifest says 3"):
        optimized.load_optimized(str(version))
    (version / "assets.extra" / "optimized" / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        optimized.load_optimized(str(version))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(schema_version=99), "schema_version: 99 is not supported"),
        (lambda m: m.update(engine="tvm"), "engine: 'tvm'"),
        (lambda m: m.update(precision="fp8"), "precision: 'fp8'"),
        (lambda m: m["artifacts"][0].update(file="../../saved_model.pb"), "must be a plain file name"),
        (lambda m: m["artifacts"][0].update(format="tflite"), "format"),
        (lambda m: m["artifacts"][0]["inputs"][0].update(dtype="complex64"), "dtype"),
        (lambda m: m["artifacts"][0]["outputs"][0].update(shape=[-1, "K"]), "shape"),
        (lambda m: m.update(artifacts=[]), "at least one artifact"),
        (lambda m: m["labels"].update(file="/etc/passwd"), "labels"),
        (lambda m: m["gates"].pop("speed"), r"did not pass \(speed\)"),
    ],
)
def test_schema_violations_name_the_field(version, edit, match):
    _rewrite(version, edit)
    with pytest.raises(ManifestError, match=match):
        optimized.load_optimized(str(version))


def test_validate_manifest_does_not_change_its_input():
    manifest = passing_manifest()
    manifest.update(schema_version=1, labels={"file": "label_names.txt", "count": 3})
    manifest["artifacts"][0].update(sha256="0" * 64, bytes=10)
    before = copy.deepcopy(manifest)
    optimized.validate_manifest(manifest)
    assert manifest == before


def test_remove_optimized_leaves_the_saved_model(version):
    optimized.remove_optimized(str(version))
    assert sorted(p.name for p in version.iterdir()) == ["saved_model.pb"]


@pytest.mark.parametrize(
    "available, expected",
    [
        (["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (["CPUExecutionProvider", "CUDAExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"],
         ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
        ([], ["CPUExecutionProvider"]),
    ],
)
def test_execution_providers_prefer_tensorrt_then_cuda_then_cpu(available, expected):
    """The GPU boundary: which providers a GPU machine's onnxruntime-gpu would be asked for (no GPU here)."""
    assert optimized.execution_providers(available) == expected
    assert optimized.execution_providers(available, allow_gpu=False) == ["CPUExecutionProvider"]


def test_module_does_not_import_tensorflow():
    import subprocess

    code = "import sys, serving.optimized; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
