"""Issue 11 items 2-3: the reload API cannot point anywhere or stall polling; health tells
the truth after a restart; `latest` falls back to the newest version that loads.

Real in-process servers on 127.0.0.1, real SavedModels, the real TF Serving stubs.
"""
import argparse
import os
import time

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.server import ModelServer, ServerOptions
from serving.server import paths
from serving.server.model_manager import ManagerOptions
from serving.server.options import add_arguments, options_from_args
from tests.serving import helpers

State = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    """One real exported SavedModel (the tiny CNN of the serving tests)."""
    return helpers.export_version(str(tmp_path_factory.mktemp("export") / "v1"), seed=1)


def _start(base: str, retries: int = 0, retry_seconds: float = 0.1, budget: float = 60.0, **options) -> ModelServer:
    server_options = ServerOptions(model_name="digits", model_base_path=base, port=0,
                                   file_system_poll_wait_seconds=0.1, **options)
    manager_options = ManagerOptions(file_system_poll_wait_seconds=0.1, max_num_load_retries=retries,
                                     load_retry_interval_seconds=retry_seconds, load_budget_seconds=budget)
    return ModelServer(server_options, manager_options).start()


def _config(*models) -> model_server_config_pb2.ModelServerConfig:
    """models: (name, base_path, policy text) tuples."""
    text = "model_config_list {\n" + "".join(
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" model_version_policy {{ {policy} }} }}\n'
        for name, base, policy in models
    ) + "}"
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def _reload(stubs, config, timeout=30.0):
    request = model_management_pb2.ReloadConfigRequest(config=config)
    return stubs.models.HandleReloadConfigRequest(request, timeout=timeout)


def _statuses(stubs, name="digits") -> dict:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return {s.version: s for s in stubs.models.GetModelStatus(request, timeout=10).model_version_status}


def _answering_version(stubs) -> int:
    return stubs.predict.Predict(helpers.image_request(), timeout=10).model_spec.version.value


def _health(port: int, service: str = "") -> int:
    health_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc", reason="grpcio-health-checking is not installed")
    from grpc_health.v1 import health_pb2

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_grpc.HealthStub(channel).Check(request, timeout=10).status


def _serving_status(name: str) -> int:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckResponse.ServingStatus.Value(name)


# -- item 2: reload ----------------------------------------------------------------------
def test_reload_outside_the_allowed_roots_is_permission_denied(good_model, tmp_path):
    base = str(tmp_path / "served" / "digits")
    helpers.push_version(good_model, base, 1)
    elsewhere = str(tmp_path / "elsewhere" / "digits")
    helpers.push_version(good_model, elsewhere, 5)
    os.symlink(elsewhere, os.path.join(base, "link"))  # inside the root by name, outside by realpath
    server = _start(base)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        for attempt in (elsewhere, os.path.join(base, "link"), "/proc", "/"):
            with pytest.raises(grpc.RpcError) as error:
                _reload(stubs, _config(("digits", attempt, "all {}")))
            assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, attempt
            assert "--allowed_model_base_path_roots" in error.value.details()
            assert os.path.realpath(base) in error.value.details()  # names the allowed roots
        assert _answering_version(stubs) == 1  # nothing changed
        assert sorted(_statuses(stubs)) == [1]
        # The start-up base path itself stays allowed (policy and label changes work).
        assert _reload(stubs, _config(("digits", base, "latest { num_versions: 1 }"))).status.error_code == 0
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_allowed_roots_flag_admits_more_base_paths(good_model, tmp_path):
    base = str(tmp_path / "served" / "digits")
    helpers.push_version(good_model, base, 1)
    extra = str(tmp_path / "extra")
    helpers.push_version(good_model, os.path.join(extra, "reviews"), 3)
    server = _start(base, allowed_model_base_path_roots=f" {extra} ,")
    stubs = helpers.Stubs(server.grpc_port)
    try:
        config = _config(("digits", base, "latest { num_versions: 1 }"), ("reviews", os.path.join(extra, "reviews"), "all {}"))
        assert _reload(stubs, config).status.error_code == 0
        assert _statuses(stubs, "reviews")[3].state == State.AVAILABLE
        assert _answering_version(stubs) == 1
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_reload_api_can_be_turned_off(good_model, tmp_path):
    base = str(tmp_path / "digits")
    helpers.push_version(good_model, base, 1)
    server = _start(base, enable_model_config_reload=False)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        with pytest.raises(grpc.RpcError) as error:
            _reload(stubs, _config(("digits", base, "all {}")))
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "--enable_model_config_reload" in error.value.details()
        assert _answering_version(stubs) == 1
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_a_base_path_full_of_bad_versions_cannot_hold_the_poll_lock(good_model, tmp_path):
    """`policy all` over 40 unloadable versions, 2 retries 0.5 s apart each: ~40 s of
    loading today. With a 3 s load budget no retry starts after ~3 s, so the reload
    answers in about that and the next reload finds the poll lock free."""
    base = str(tmp_path / "served" / "digits")
    helpers.push_version(good_model, base, 1)
    junk = tmp_path / "junk"
    for version in range(1, 41):
        (junk / str(version)).mkdir(parents=True)  # no saved_model.pb: every load fails
    server = _start(base, retries=2, retry_seconds=0.5, budget=3.0, allowed_model_base_path_roots=str(junk))
    stubs = helpers.Stubs(server.grpc_port)
    try:
        started = time.monotonic()
        _reload(stubs, _config(("digits", base, "latest { num_versions: 1 }"), ("junk", str(junk), "all {}")), timeout=20)
        first = time.monotonic() - started
        assert first < 6.0, f"the reload held on for {first:.1f} s"
        assert _answering_version(stubs) == 1  # digits kept serving
        time.sleep(0.5)  # a background pass is now loading the versions the budget deferred
        started = time.monotonic()
        _reload(stubs, _config(("digits", base, "latest { num_versions: 1 }")), timeout=20)  # drops junk
        second = time.monotonic() - started
        assert second < 1.5, f"the second reload waited {second:.1f} s for the poll lock"
        assert server.manager.model_names == ["digits"]
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_background_loads_give_way_to_a_reload(good_model, tmp_path, monkeypatch):
    """16 good versions under policy all, a 4 s load budget: after the first reload returns,
    background passes keep loading; a second reload waits for one load, not a whole pass.

    Each load is made at least 0.4 s (a real load plus a pause), so 16 loads cannot fit in
    the budget on a fast, quiet machine either: the deferred loads always exist."""
    from serving.server import model_manager

    real_load = model_manager.LoadedVersion.load

    def slow_load(*args, **kwargs):
        time.sleep(0.4)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model_manager.LoadedVersion, "load", staticmethod(slow_load))
    base = str(tmp_path / "served" / "digits")
    helpers.push_version(good_model, base, 1)
    many = str(tmp_path / "many" / "digits")
    for version in range(1, 17):
        helpers.push_version(good_model, many, version)
    server = _start(base, budget=4.0, allowed_model_base_path_roots=str(tmp_path / "many"))
    stubs = helpers.Stubs(server.grpc_port)
    try:
        _reload(stubs, _config(("digits", base, "latest { num_versions: 1 }"), ("many", many, "all {}")), timeout=30)
        time.sleep(0.5)  # a background pass is now loading the versions the budget deferred
        loaded_before = len(server.manager.available_versions()["many"])
        assert loaded_before < 16, "no load was left for a background pass; raise the version count"
        started = time.monotonic()
        _reload(stubs, _config(("digits", base, "latest { num_versions: 1 }")), timeout=30)
        waited = time.monotonic() - started
        assert waited < 2.0, f"the reload waited {waited:.1f} s behind a background pass"
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_poll_once_mode_finishes_the_loads_the_budget_deferred(good_model, tmp_path):
    """With --file_system_poll_wait_seconds=0 there is no poller, yet versions deferred by
    the load budget must still load (policy all, 3 versions, a budget shorter than one load)."""
    base = str(tmp_path / "digits")
    for version in (1, 2, 3):
        helpers.push_version(good_model, base, version)
    config_file = tmp_path / "models.config"
    config_file.write_text(text_format.MessageToString(_config(("digits", base, "all {}"))))
    server = ModelServer(ServerOptions(model_config_file=str(config_file), port=0, file_system_poll_wait_seconds=0),
                         ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0, load_budget_seconds=0.01)).start()
    try:
        assert len(server.manager.available_versions()["digits"]) <= 1  # start stopped loading after the budget
        helpers.wait_until(lambda: server.manager.available_versions() == {"digits": [1, 2, 3]}, what="all versions to load")
        assert server.ready() == (True, "")
    finally:
        server.stop(grace=1.0)


def test_listing_a_base_path_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "MAX_LISTED_ENTRIES", 50)
    for version in range(1, 121):
        (tmp_path / str(version)).mkdir()
    found = paths.list_version_dirs(str(tmp_path))
    assert 0 < len(found) <= 50


def test_reload_flags_parse():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model_base_path=/m", "--enable_model_config_reload=false",
                              "--allowed_model_base_path_roots=/a,/b", "--load_budget_seconds=5"])
    options = options_from_args(args)
    assert (options.enable_model_config_reload, options.allowed_model_base_path_roots, options.load_budget_seconds) == (False, "/a,/b", 5.0)
    assert ServerOptions(model_base_path="/m").enable_model_config_reload is True
    with pytest.raises(ValueError, match="load_budget_seconds"):
        ServerOptions(model_base_path="/m", load_budget_seconds=0)
    assert paths.allowed_roots(["/x/../y/m"], "/a, /b,") == ("/a", "/b", os.path.realpath("/y/m"))


# -- item 3: health and the latest fallback ------------------------------------------------
def test_health_is_not_serving_when_no_version_loads_after_a_restart(good_model, tmp_path):
    base = str(tmp_path / "digits")
    helpers.push_corrupt_version(base, 1)  # the only version is corrupt
    server = _start(base)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        assert _health(server.grpc_port) == _serving_status("NOT_SERVING")
        assert _health(server.grpc_port, "tensorflow.serving.PredictionService") == _serving_status("NOT_SERVING")
        assert _health(server.grpc_port, "tensorflow.serving.ModelService") == _serving_status("SERVING")
        ready, why = server.ready()
        assert not ready and "digits" in why
        assert server.manager.not_ready_models() == ["digits"]
        assert _statuses(stubs)[1].state == State.END
        helpers.push_version(good_model, base, 2)  # a good push makes it ready again
        helpers.wait_until(lambda: _health(server.grpc_port) == _serving_status("SERVING"), what="health SERVING")
        assert server.ready() == (True, "")
        assert _answering_version(stubs) == 2
    finally:
        stubs.close()
        server.stop(grace=1.0)
    assert server.ready() == (False, "the server is shutting down")


def test_latest_falls_back_to_the_newest_version_that_loads_after_a_restart(good_model, tmp_path):
    base = str(tmp_path / "digits")
    helpers.push_version(good_model, base, 1)
    helpers.push_corrupt_version(base, 2)  # the newest push is corrupt, then the server restarts
    server = _start(base)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        assert _answering_version(stubs) == 1
        statuses = _statuses(stubs)
        assert statuses[1].state == State.AVAILABLE
        assert statuses[2].state == State.END  # as TF Serving reports a failed load
        assert statuses[2].status.error_code != 0 and "failed to load" in statuses[2].status.error_message
        assert _health(server.grpc_port) == _serving_status("SERVING")
        assert server.ready() == (True, "")
        helpers.push_version(good_model, base, 3)  # a good newer push takes over as usual
        helpers.wait_until(lambda: _answering_version(stubs) == 3, what="version 3 to answer")
        helpers.wait_until(lambda: _statuses(stubs)[1].state == State.END, what="version 1 retired")
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_latest_n_keeps_n_loadable_versions_serving(good_model, tmp_path):
    base = str(tmp_path / "digits")
    for version in (1, 2):
        helpers.push_version(good_model, base, version)
    helpers.push_corrupt_version(base, 3)
    config_file = tmp_path / "models.config"
    config_file.write_text(text_format.MessageToString(_config(("digits", base, "latest { num_versions: 2 }"))))
    server = ModelServer(ServerOptions(model_config_file=str(config_file), port=0, file_system_poll_wait_seconds=0.1),
                         ManagerOptions(file_system_poll_wait_seconds=0.1, max_num_load_retries=0)).start()
    try:
        assert server.manager.available_versions() == {"digits": [1, 2]}
    finally:
        server.stop(grace=1.0)
