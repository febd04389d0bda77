"""TLS, the gRPC health service, graceful stop, and name/path validation."""
import datetime
import ipaddress
import os
import threading

import grpc
import pytest

from serving.client import RestClient, ServingClient
from serving.server.errors import ServingError
from serving.server.paths import check_model_name, list_version_dirs, resolve_base_path
from tests.serving import helpers
from tests.serving.conftest import start_server


def _self_signed(directory) -> tuple:
    """A throwaway certificate for 127.0.0.1 (cryptography is already a dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_health_and_graceful_stop(exported, tmp_path):
    health = pytest.importorskip("grpc_health.v1.health_pb2_grpc", reason="grpcio-health-checking is not installed")
    from grpc_health.v1 import health_pb2

    helpers.push_version(exported[1], str(tmp_path / "digits"), 1)
    cert, key = _self_signed(str(tmp_path))
    server = start_server(str(tmp_path / "digits"), ssl_cert=cert, ssl_key=key)
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", tls=cert, timeout=10) as client:
            assert client.predict_images("digits", helpers.images(1)).version == 1
        assert RestClient(f"https://127.0.0.1:{server.rest_port}", cafile=cert).status("digits")[0].state == "AVAILABLE"
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout=3, retries=0) as plaintext:
            with pytest.raises(grpc.RpcError) as error:
                plaintext.status("digits")
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE  # TLS is required
        channel = grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", grpc.ssl_channel_credentials(open(cert, "rb").read()))
        checker = health.HealthStub(channel)
        for service in ("", "tensorflow.serving.PredictionService"):
            response = checker.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        channel.close()
    finally:
        server.stop(grace=1.0)


def test_graceful_stop_finishes_in_flight_requests(exported, tmp_path):
    helpers.push_version(exported[1], str(tmp_path / "digits"), 1)
    server = start_server(str(tmp_path / "digits"))
    stubs = helpers.Stubs(server.grpc_port)
    outcome = {}

    def slow_request():  # 20k images take a while: still running when stop() begins
        request = helpers.image_request(batch=20_000)
        try:
            outcome["rows"] = stubs.predict.Predict(request, timeout=60).outputs["probabilities"].tensor_shape.dim[0].size
        except grpc.RpcError as error:
            outcome["error"] = error.code()

    thread = threading.Thread(target=slow_request)
    thread.start()
    helpers.wait_until(lambda: server.metrics.inflight() > 0 or outcome, what="the request to start")
    server.stop(grace=30.0)
    thread.join()
    assert outcome == {"rows": 20_000}
    with pytest.raises(grpc.RpcError) as error:
        stubs.predict.Predict(helpers.image_request(), timeout=2)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    stubs.close()


@pytest.mark.parametrize("name", ["", "-lead", "a/b", "../x", "x" * 129, "sp ace", "ü"])
def test_bad_model_names_are_rejected(name):
    with pytest.raises(ServingError, match="invalid"):
        check_model_name(name)


def test_good_model_names_pass():
    for name in ("digits", "digits-cnn.v2", "A_1", "9" * 128):
        assert check_model_name(name) == name


@pytest.mark.parametrize("path", ["models/../etc", "", "gs://bucket/m", "a\x00b"])
def test_bad_base_paths_are_rejected(path):
    with pytest.raises(ServingError):
        resolve_base_path("digits", path)


def test_only_digit_dirs_inside_the_base_path_are_versions(tmp_path):
    base = tmp_path / "m"
    for name in ("1", "002", ".tmp-3", "4a", "٣"):  # the last is an Arabic-Indic digit
        (base / name).mkdir(parents=True)
    (base / "5").write_text("a file, not a directory")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", base / "6")
    os.symlink(base / "1", base / "7")  # a symlink that stays inside is fine
    versions = list_version_dirs(resolve_base_path("m", str(base)))
    assert sorted(versions) == [1, 2, 7]
