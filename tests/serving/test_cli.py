"""`python -m serving serve` as a real subprocess, the predict CLI, and --engine tfserving."""
import os
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from PIL import Image

from serving import cli_predict
from serving.client import ServingClient
from serving.server.options import ServerOptions
from serving.server.tfserving_engine import model_server_argv
from tests.serving import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _serve(args, env=None, **kwargs):
    environment = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "serving", "serve", *args], cwd=REPO, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_serve_subprocess_answers_and_exits_0_on_sigterm(exported, tmp_path):
    helpers.push_version(exported[1], str(tmp_path / "digits"), 1)
    process = _serve(["--model_name=digits", f"--model_base_path={tmp_path / 'digits'}", "--port=0"])
    try:
        line = ""
        while not line.startswith("serving:"):
            line = process.stdout.readline()
            assert line or process.poll() is None, f"server exited: {process.stderr.read()[-2000:]}"
        port = int(line.split("grpc=")[1].split()[0].rsplit(":", 1)[1])
        with ServingClient(f"127.0.0.1:{port}", timeout=30) as client:
            assert client.predict_images("digits", helpers.images(2)).probabilities.shape == (2, 3)
            codes, stop = [], threading.Event()

            def loop():  # requests racing the shutdown: each succeeds or is refused cleanly
                while not stop.is_set():
                    try:
                        client.predict_images("digits", helpers.images(1))
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as error:
                        codes.append(error.code())
                        return

            thread = threading.Thread(target=loop)
            thread.start()
            helpers.wait_until(lambda: len(codes) > 3, what="requests before SIGTERM")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            stop.set()
            thread.join()
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, codes
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_rejects_bad_flags_with_a_clear_message():
    process = _serve(["--model_name=digits"])  # no base path and no config file
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--model_base_path" in err


def test_engine_tfserving_explains_that_the_binary_is_missing(tmp_path):
    process = _serve(["--engine=tfserving", "--model_name=digits", f"--model_base_path={tmp_path}"],
                     env={"PATH": str(tmp_path)})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "tensorflow_model_server" in err and "neither PyPI nor Debian" in err


def test_engine_tfserving_passes_the_same_flags(tmp_path):
    # tensorflow_model_server cannot be installed here; a stand-in script on PATH records its argv.
    fake = tmp_path / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    process = _serve(["--engine=tfserving", "--model_name=digits", f"--model_base_path={tmp_path}", "--port=9000",
                      "--rest_api_port=9001", "--enable_batching=false", "--grpc_max_message_bytes=2048"],
                     env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    for flag in ("--port=9000", "--rest_api_port=9001", "--model_name=digits", f"--model_base_path={tmp_path}",
                 "--enable_batching=false", "grpc.max_receive_message_length=2048"):
        assert flag in out
    argv = model_server_argv(ServerOptions(model_config_file="/m.config", port=1))
    assert "--model_config_file=/m.config" in argv and not any(a.startswith("--model_name") for a in argv)


def test_engine_tfserving_passes_tf_serving_flags_on(tmp_path):
    fake = tmp_path / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    process = _serve(["--engine=tfserving", "--model_name=m", f"--model_base_path={tmp_path}", "--port=9000",
                      "--grpc_channel_arguments=grpc.max_connection_age_ms=2000", "--grpc_socket_path=/tmp/tfs.sock",
                      "--enable_signature_method_name_check", "--rest_api_enable_cors_support=true", "--num_load_threads=4"],
                     env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    for flag in (",grpc.max_connection_age_ms=2000", "--grpc_socket_path=/tmp/tfs.sock", "--enable_signature_method_name_check=true",
                 "--rest_api_enable_cors_support=true", "--num_load_threads=4"):
        assert flag in out, out
    assert "accepted and ignored" not in err  # the real binary honours them


def test_predict_cli_prints_top_k_labels(server, tmp_path, capsys):
    paths = []
    for i, image in enumerate(helpers.images(2)):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.repeat(np.kron(image[..., 0], np.ones((4, 4), np.uint8))[..., None], 3, axis=2)).save(path)
        paths.append(str(path))  # 32x32 RGB: the CLI converts to 8x8 grayscale
    code = cli_predict.main(["--model", "digits", "--image", *paths, "--top_k", "2", "--server", f"127.0.0.1:{server.grpc_port}"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith(f"{paths[0]}: ") and lines[0].count("|") == 1
    assert lines[0].split(": ")[1].split()[0] in helpers.LABELS
    code = cli_predict.main(["--model", "digits", "--image", paths[0], "--rest", f"http://127.0.0.1:{server.rest_port}"])
    assert code == 0 and capsys.readouterr().out.count("|") == 2
    code = cli_predict.main(["--model", "nope", "--image", paths[0], "--server", f"127.0.0.1:{server.grpc_port}"])
    assert code == 1 and "NOT_FOUND" in capsys.readouterr().err


def test_predict_cli_reads_tfrecord_examples(server, tmp_path, capsys):
    import tensorflow as tf

    path = str(tmp_path / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for image in helpers.images(3):
            writer.write(helpers.png_example(image))
    code = cli_predict.main(["--model", "digits", "--examples", path, "--top_k", "1", "--server", f"127.0.0.1:{server.grpc_port}"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[2].startswith(f"{path}[2]: ")
