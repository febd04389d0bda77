"""TF Serving config generators (serving/tfs_config.py) and the committed serving/deploy/ files.

Docker and Kubernetes cannot run here, so the deploy files are checked the way the model
server and the orchestrators would first read them: YAML parsed with PyYAML, text protos
parsed into the TF Serving proto classes.
"""
import os
import shlex
import shutil

import pytest
import yaml
from hypothesis import given, settings, strategies as st
from tensorflow_serving.config import model_server_config_pb2

from serving import layout, tfs_config
from serving.tfs_config import (
    ModelSpec,
    TfsConfigError,
    VersionPolicy,
    build_batching_parameters,
    build_model_server_config,
    build_monitoring_config,
    main,
    model_specs_from_config,
    parse_text,
    scan_versions,
    to_text,
)
from serving.tfs_protos import BatchingParameters, MonitoringConfig

DEPLOY_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "serving", "deploy")
GENERATED_FILES = {
    "models.config": model_server_config_pb2.ModelServerConfig,
    "batching_parameters.txt": BatchingParameters,
    "monitoring.config": MonitoringConfig,
}
IMAGE = "tensorflow/serving:2.19.1"
REQUIRED_FLAGS = {
    "--port": "8500",
    "--rest_api_port": "8501",
    "--model_config_file": "/config/models.config",
    "--enable_batching": "true",
    "--batching_parameters_file": "/config/batching_parameters.txt",
    "--monitoring_config_file": "/config/monitoring.config",
}


def deploy_path(name):
    return os.path.join(DEPLOY_DIR, name)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def flags(args):
    """['--a=1', '--b=2'] -> {'--a': '1', '--b': '2'}."""
    return dict(arg.split("=", 1) for arg in args)


# ---- models.config ---------------------------------------------------------------------

def test_model_server_config_round_trips_through_the_tf_serving_proto():
    specs = [
        ModelSpec("digits", "/models/digits", VersionPolicy.parse("specific:3,4"), {"stable": 3, "canary": 4}),
        ModelSpec("digits-large", "/models/digits-large", VersionPolicy.parse("latest:2"), {"stable": 7}),
        ModelSpec("archive.v1", "gs://bucket/models/archive", VersionPolicy.parse("all")),
    ]
    text = to_text(build_model_server_config(specs), header="made by a test")
    assert text.startswith("# made by a test\n")

    parsed = parse_text(text, model_server_config_pb2.ModelServerConfig)
    configs = parsed.model_config_list.config
    assert [c.name for c in configs] == ["digits", "digits-large", "archive.v1"]
    assert [c.base_path for c in configs] == ["/models/digits", "/models/digits-large", "gs://bucket/models/archive"]
    assert {c.model_platform for c in configs} == {"tensorflow"}
    assert list(configs[0].model_version_policy.specific.versions) == [3, 4]
    assert dict(configs[0].version_labels) == {"stable": 3, "canary": 4}
    assert configs[1].model_version_policy.latest.num_versions == 2
    assert configs[2].model_version_policy.WhichOneof("policy_choice") == "all"
    assert model_specs_from_config(parsed) == specs


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.from_regex(layout.MODEL_NAME_PATTERN, fullmatch=True), min_size=1, max_size=3, unique=True),
    versions=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=4, unique=True),
    label=st.from_regex(tfs_config.LABEL_PATTERN, fullmatch=True),
)
def test_any_valid_spec_survives_text_and_back(names, versions, label):
    specs = [
        ModelSpec(name, f"/models/{name}x", VersionPolicy("specific", versions=tuple(versions)), {label: versions[-1]})
        for name in names
    ]
    text = to_text(build_model_server_config(specs))
    assert model_specs_from_config(parse_text(text, model_server_config_pb2.ModelServerConfig)) == specs


@pytest.mark.parametrize(
    "text, expected",
    [
        ("latest", VersionPolicy("latest", 1)),
        ("latest:3", VersionPolicy("latest", 3)),
        ("all", VersionPolicy("all")),
        ("specific:4, 2", VersionPolicy("specific", versions=(4, 2))),
    ],
)
def test_version_policy_parses(text, expected):
    assert VersionPolicy.parse(text) == expected
    assert VersionPolicy.parse(str(expected)) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("latest:0", "latest:0 must keep at least one version; use latest:1 or more"),
        ("latest:-1", "'latest:-1'.*positive integer; write latest:N"),
        ("newest:2", "'newest:2' is not understood; write latest:N, all or specific:V1,V2"),
        ("specific:", "not understood; write"),
        ("specific:1,x", "non-negative integers; write"),
        ("specific:2,2", r"repeat a version; list each once, e.g. specific:2$"),
        ("all:3", "not understood; write"),
    ],
)
def test_bad_version_policy_is_named_with_the_fix(text, message):
    with pytest.raises(TfsConfigError, match=message):
        VersionPolicy.parse(text)


@pytest.mark.parametrize(
    "spec, message",
    [
        (ModelSpec("bad name", "/models/x"), r"model name 'bad name' is invalid.*e\.g\. digits"),
        (ModelSpec("-digits", "/models/x"), "starting with a letter or digit"),
        (ModelSpec("d" * 129, "/models/x"), "1-128 characters"),
        (ModelSpec("digits", "models/digits"), "must be an absolute path inside the server"),
        (ModelSpec("digits", "/models/my digits"), "without spaces or quotes"),
        (ModelSpec("digits", "/models/../etc"), "contains '..'"),
        (ModelSpec("digits", "/models/digits/3"), "wants the parent of the versions: '/models/digits'"),
        (ModelSpec("digits", "/m", labels={"stable/1": 1}), "label 'stable/1' of model 'digits' is invalid"),
        (ModelSpec("digits", "/m", labels={"stable": -1}), "version -1 in label digits:stable"),
        (
            ModelSpec("digits", "/m", VersionPolicy.parse("specific:3"), {"stable": 3, "canary": 4}),
            r"versions \[4\] that policy specific:3 does not load; add them, e.g. --policy digits=specific:3,4",
        ),
        (
            ModelSpec("digits", "/m", VersionPolicy.parse("latest:1"), {"stable": 3, "canary": 4}),
            r"keeps only 1; use latest:2 or, better for stable/canary, specific:3,4",
        ),
    ],
)
def test_bad_model_spec_is_named_with_the_fix(spec, message):
    with pytest.raises(TfsConfigError, match=message):
        build_model_server_config([spec])


def test_duplicate_and_missing_models_are_rejected():
    with pytest.raises(TfsConfigError, match="configured twice"):
        build_model_server_config([ModelSpec("digits", "/a"), ModelSpec("digits", "/b")])
    with pytest.raises(TfsConfigError, match="no models given"):
        build_model_server_config([])


# ---- versions on disk (real SavedModels) -------------------------------------------------

@pytest.fixture(scope="module")
def pushed_versions(tmp_path_factory):
    """A base path holding real serving-contract SavedModels as versions 1, 2 and 3."""
    import keras

    from components.train.export import export_serving_model

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    base = tmp_path_factory.mktemp("serving") / "digits"
    export_serving_model(model, str(base / "1"), image_shape=(8, 8, 1), label_names=["a", "b", "c"])
    for version in ("2", "3"):
        shutil.copytree(base / "1", base / version)
    (base / "4-incomplete").mkdir()  # not an integer: TF Serving ignores it, so must we
    (base / "5").mkdir()  # push in progress, no saved_model.pb yet
    return base


def test_scan_finds_only_complete_integer_versions(pushed_versions):
    assert scan_versions(str(pushed_versions)) == [1, 2, 3]
    with pytest.raises(TfsConfigError, match="is not a directory"):
        scan_versions(str(pushed_versions / "missing"))


def test_labels_are_checked_against_versions_on_disk(pushed_versions):
    available = {"digits": scan_versions(str(pushed_versions))}
    ok = ModelSpec("digits", "/models/digits", VersionPolicy("latest", 2), {"stable": 2, "canary": 3})
    assert dict(build_model_server_config([ok], available).model_config_list.config[0].version_labels) == {"stable": 2, "canary": 3}

    # latest:2 of [1, 2, 3] loads 2 and 3: a label on 1 would be refused by the server.
    stale = ModelSpec("digits", "/models/digits", VersionPolicy("latest", 2), {"stable": 1, "canary": 3})
    with pytest.raises(TfsConfigError, match=r"versions \[1\] that will not be loaded.*loads \[2, 3\]"):
        build_model_server_config([stale], available)
    missing = ModelSpec("digits", "/models/digits", VersionPolicy("specific", versions=(3, 9)))
    with pytest.raises(TfsConfigError, match=r"names versions \[9\] that are not on disk"):
        build_model_server_config([missing], available)
    with pytest.raises(TfsConfigError, match="push a model first"):
        build_model_server_config([ok], {"digits": []})
    with pytest.raises(TfsConfigError, match="scanned for model 'other'"):
        build_model_server_config([ok], {"other": [1]})


def test_cli_config_writes_a_parsable_file_and_checks_it(pushed_versions, tmp_path, capsys):
    output = tmp_path / "models.config"
    argv = [
        "config", "--model", "digits=/models/digits", "--policy", "digits=specific:2,3",
        "--label", "digits:stable=2", "--label", "digits:canary=3",
        "--scan", f"digits={pushed_versions}", "--output", str(output),
    ]
    assert main(argv) == 0
    entry = parse_text(read(output), model_server_config_pb2.ModelServerConfig).model_config_list.config[0]
    assert (entry.name, entry.base_path) == ("digits", "/models/digits")
    assert list(entry.model_version_policy.specific.versions) == [2, 3]
    assert dict(entry.version_labels) == {"stable": 2, "canary": 3}

    assert main(["check", str(output), "--scan", f"digits={pushed_versions}"]) == 0
    assert "OK (1 model(s))" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["config", "--model", "digits"], "--model 'digits' is malformed; write it as NAME=BASE_PATH"),
        (["config", "--model", "digits=/m", "--policy", "other=all"], "no --model other=BASE_PATH"),
        (["config", "--model", "digits=/m", "--label", "digits=3"], "write it as NAME:LABEL=VERSION"),
        (["config", "--model", "digits=/m", "--label", "digits:stable=v3"], "must be an integer"),
        (["config", "--model", "digits=/m", "--model", "digits=/n"], "configured twice"),
        (["batching", "--allowed-batch-sizes", "8,x"], "comma-separated integers"),
        (["monitoring", "--path", "metrics"], "must start with '/'"),
    ],
)
def test_cli_reports_bad_input_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_check_rejects_a_broken_file(tmp_path, capsys):
    broken = tmp_path / "models.config"
    broken.write_text('model_config_list { config { name: "digits" base_path: "/models/digits" model_platform: "tensorflow" wrong: 1 } }')
    assert main(["check", str(broken)]) == 2
    assert "is not a ModelServerConfig text proto" in capsys.readouterr().err


# ---- batching and monitoring -----------------------------------------------------------

def test_batching_parameters_parse_as_the_tf_serving_proto():
    text = to_text(build_batching_parameters(64, 500, 4, 10, [16, 64], pad_variable_length_inputs=True))
    params = parse_text(text, BatchingParameters)
    assert params.max_batch_size.value == 64
    assert params.batch_timeout_micros.value == 500
    assert params.num_batch_threads.value == 4
    assert params.max_enqueued_batches.value == 10
    assert list(params.allowed_batch_sizes) == [16, 64]
    assert params.pad_variable_length_inputs is True
    # Field numbers and wrapper types as upstream: max_batch_size is field 1, an Int64Value.
    assert BatchingParameters(max_batch_size={"value": 32}).SerializeToString() == b"\x0a\x02\x08\x20"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_batch_size": 0, "allowed_batch_sizes": []}, r"max_batch_size=0 must be an integer >= 1"),
        ({"batch_timeout_micros": -1}, r"batch_timeout_micros=-1 must be an integer >= 0"),
        ({"num_batch_threads": 0}, "num_batch_threads=0"),
        ({"max_enqueued_batches": 0}, "max_enqueued_batches=0"),
        ({"allowed_batch_sizes": [16, 8, 32]}, "strictly increasing"),
        ({"allowed_batch_sizes": [8, 16]}, "must end with max_batch_size=32.*append 32"),
    ],
)
def test_bad_batching_parameters_are_named_with_the_fix(kwargs, message):
    with pytest.raises(TfsConfigError, match=message):
        build_batching_parameters(**kwargs)


def test_monitoring_config_parses_as_the_tf_serving_proto():
    config = parse_text(to_text(build_monitoring_config()), MonitoringConfig)
    assert config.prometheus_config.enable is True
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"
    with pytest.raises(TfsConfigError, match="stay out of the /v1/ REST API"):
        build_monitoring_config("/v1/metrics")


# ---- committed serving/deploy files ----------------------------------------------------

@pytest.mark.parametrize("name, proto_class", GENERATED_FILES.items())
def test_committed_config_files_parse_and_match_their_generator(name, proto_class, tmp_path):
    committed = read(deploy_path(name))
    parse_text(committed, proto_class)  # raises on any unknown field or syntax error

    # The header records the command; re-running it must give the same bytes (no hand edits).
    command = committed.splitlines()[0].removeprefix("# Generated by: python -m serving.tfs_config ")
    regenerated = tmp_path / name
    assert main(shlex.split(command) + ["--output", str(regenerated)]) == 0
    assert read(regenerated) == committed


def test_committed_models_config_serves_digits_from_the_pushed_base_path():
    config = parse_text(read(deploy_path("models.config")), model_server_config_pb2.ModelServerConfig)
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("digits", "/models/digits", "tensorflow")
    assert entry.model_version_policy.latest.num_versions == 2
    assert main(["check", deploy_path("models.config")]) == 0


def test_committed_batching_and_monitoring_values():
    params = parse_text(read(deploy_path("batching_parameters.txt")), BatchingParameters)
    assert (params.max_batch_size.value, params.num_batch_threads.value) == (32, 2)
    assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value
    monitoring = parse_text(read(deploy_path("monitoring.config")), MonitoringConfig)
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_docker_compose_runs_the_pinned_server_over_the_pushed_models():
    service = yaml.safe_load(read(deploy_path("docker-compose.yml")))["services"]["tfserving"]
    assert service["image"] == IMAGE
    assert service["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
    server_flags = flags(service["command"])
    assert REQUIRED_FLAGS.items() <= server_flags.items()
    assert int(server_flags["--file_system_poll_wait_seconds"]) > 0
    assert service["ports"] == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]  # loopback only
    mounts = {m["target"]: m for m in service["volumes"]}
    assert os.path.normpath(mounts["/models"]["source"]) == os.path.join("..", "..", "runs", "serving")
    assert mounts["/models"]["read_only"] and mounts["/config"]["read_only"]
    assert os.path.samefile(os.path.join(DEPLOY_DIR, mounts["/config"]["source"]), DEPLOY_DIR)
    for name in GENERATED_FILES:  # every config flag points at a committed file
        assert f"/config/{name}" in server_flags.values()
    assert service["user"] == "1000:1000" and service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "/v1/models/digits" in service["healthcheck"]["test"][-1]


def test_kubernetes_manifest_deployment_service_and_config_map():
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(read(deploy_path("kubernetes.yaml")))}
    assert set(documents) == {"ConfigMap", "Deployment", "Service"}

    # The ConfigMap carries the committed files byte for byte.
    assert documents["ConfigMap"]["data"] == {name: read(deploy_path(name)) for name in GENERATED_FILES}

    pod = documents["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert REQUIRED_FLAGS.items() <= flags(container["args"]).items()
    compose = yaml.safe_load(read(deploy_path("docker-compose.yml")))["services"]["tfserving"]
    assert container["args"] == compose["command"]  # one server command line for both
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8500, "http": 8501}

    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v1/models/digits", "port": "http"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"]
    assert mounts["config"]["mountPath"] == "/config" and "subPath" not in mounts["config"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == documents["ConfigMap"]["metadata"]["name"]

    service = documents["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == documents["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["port"] for p in service["ports"]} == {8500, 8501}
