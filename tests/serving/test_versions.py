"""Version lifecycle: pushes under load, failed loads, policies, labels, warmup, reloads."""
import os
import threading

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.server import ModelServer, ServerOptions
from serving.server.model_manager import ManagerOptions
from serving.server.warmup import write_warmup_file
from tests.serving import helpers
from tests.serving.conftest import running_server

State = get_model_status_pb2.ModelVersionStatus.State


def _statuses(stubs, name="digits") -> dict:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    response = stubs.models.GetModelStatus(request, timeout=10)
    return {s.version: s for s in response.model_version_status}


def _wait_state(stubs, version: int, state: int, what: str):
    def reached():
        status = _statuses(stubs).get(version)
        return status if status is not None and status.state == state else None

    return helpers.wait_until(reached, what=what)


def _answering_version(stubs, **spec) -> int:
    return stubs.predict.Predict(helpers.image_request(**spec), timeout=10).model_spec.version.value


@pytest.fixture
def fresh(exported, tmp_path):
    """A server of its own with version 1, for tests that push versions."""
    base = str(tmp_path / "digits")
    helpers.push_version(exported[1], base, 1)
    with running_server(base) as (server, stubs):
        yield base, server, stubs


def test_push_under_load_has_zero_failed_requests(fresh, exported):
    base, server, stubs = fresh
    seen, failures, stop = [], [], threading.Event()

    def loop():
        while not stop.is_set():
            try:
                seen.append(_answering_version(stubs))
            except grpc.RpcError as error:
                failures.append(error.code())

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    helpers.wait_until(lambda: len(seen) > 5, what="requests before the push")
    helpers.push_version(exported[2], base, 2)
    helpers.wait_until(lambda: seen and seen[-1] == 2, what="version 2 to answer")
    count_at_switch = len(seen)
    helpers.wait_until(lambda: len(seen) > count_at_switch + 5, what="requests after the switch")
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2
    statuses = _statuses(stubs)
    assert statuses[2].state == State.AVAILABLE
    _wait_state(stubs, 1, State.END, "version 1 retired (latest:1)")


def test_corrupt_version_keeps_the_old_one_serving(fresh):
    base, server, stubs = fresh
    helpers.push_corrupt_version(base, 3)
    status = _wait_state(stubs, 3, State.END, "the failed load of version 3")
    assert status.status.error_code != 0
    assert "failed to load" in status.status.error_message
    assert _statuses(stubs)[1].state == State.AVAILABLE
    assert _answering_version(stubs) == 1
    with pytest.raises(grpc.RpcError) as error:
        _answering_version(stubs, version=3)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _config(base: str, policy: str, labels: dict) -> model_server_config_pb2.ModelServerConfig:
    label_text = "".join(f'version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    text = f'''model_config_list {{ config {{
        name: "digits" base_path: "{base}" model_platform: "tensorflow"
        model_version_policy {{ {policy} }}
        {label_text} }} }}'''
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_config_file_with_specific_versions_and_labels(exported, tmp_path):
    base = str(tmp_path / "digits")
    for version in (1, 2):
        helpers.push_version(exported[version], base, version)
    helpers.push_version(exported[1], base, 5)  # on disk but not in the policy
    config_file = tmp_path / "models.config"
    config_file.write_text(text_format.MessageToString(_config(base, "specific { versions: 1 versions: 2 }", {"stable": 1, "canary": 2})))
    options = ServerOptions(model_config_file=str(config_file), port=0, file_system_poll_wait_seconds=0.1)
    server = ModelServer(options, ManagerOptions(file_system_poll_wait_seconds=0.1, max_num_load_retries=0)).start()
    stubs = helpers.Stubs(server.grpc_port)
    try:
        assert _answering_version(stubs, label="stable") == 1
        assert _answering_version(stubs, label="canary") == 2
        assert _answering_version(stubs) == 2  # no version: the highest available
        assert 5 not in _statuses(stubs)
        # Reload: serve all versions, move canary to 5.
        request = model_management_pb2.ReloadConfigRequest(config=_config(base, "all {}", {"stable": 2, "canary": 5}))
        assert stubs.models.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
        assert _answering_version(stubs, label="canary") == 5
        assert _answering_version(stubs, label="stable") == 2
        assert _answering_version(stubs, version=1) == 1
        bad = model_management_pb2.ReloadConfigRequest(config=_config(base, "all {}", {}))
        bad.config.model_config_list.config[0].name = "bad name!"
        with pytest.raises(grpc.RpcError) as error:
            stubs.models.HandleReloadConfigRequest(bad, timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _answering_version(stubs, label="canary") == 5  # the bad config changed nothing
    finally:
        stubs.close()
        server.stop(grace=1.0)


def test_warmup_runs_before_available_and_a_bad_warmup_fails_the_load(exported, tmp_path):
    base = str(tmp_path / "digits")
    good = helpers.push_version(exported[1], base, 1)
    write_warmup_file(good, [helpers.image_request(batch=1)] * 3)
    with running_server(base) as (server, stubs):
        version = server.manager.resolve(helpers.image_request().model_spec)
        assert version.signature("serving_images").batcher.rows_run == 3  # the warmup requests ran
        staging = str(tmp_path / "staging")
        helpers.push_version(exported[2], staging, 2)
        broken = predict_pb2.PredictRequest()
        broken.model_spec.name = "digits"
        broken.model_spec.signature_name = "no_such_signature"
        write_warmup_file(os.path.join(staging, "2"), [broken])
        os.rename(os.path.join(staging, "2"), os.path.join(base, "2"))
        status = _wait_state(stubs, 2, State.END, "the warmup failure of version 2")
        assert "no_such_signature" in status.status.error_message
        assert _answering_version(stubs) == 1


def test_version_dirs_escaping_the_base_path_are_ignored(exported, tmp_path):
    base = tmp_path / "digits"
    helpers.push_version(exported[1], str(base), 1)
    outside = helpers.push_version(exported[2], str(tmp_path / "elsewhere"), 7)
    os.symlink(outside, base / "7")  # a symlinked version dir pointing outside the base path
    (base / ".tmp-9").mkdir()  # an unfinished push
    with running_server(base) as (server, stubs):
        assert sorted(_statuses(stubs)) == [1]
        assert _answering_version(stubs) == 1
