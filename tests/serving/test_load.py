"""Bounded concurrent load: 16 client threads for 5 s, zero errors, and real batching."""
import threading
import time

import grpc

from tests.serving import helpers

CLIENTS = 16
SECONDS = 5.0


def test_sixteen_clients_for_five_seconds_have_zero_errors(server, stubs):
    counts, errors = [0] * CLIENTS, []
    deadline = time.monotonic() + SECONDS
    requests = [helpers.image_request(batch=1 + i % 3) for i in range(CLIENTS)]

    def client(i):
        while time.monotonic() < deadline:
            try:
                response = stubs.predict.Predict(requests[i], timeout=30)
                assert response.outputs["probabilities"].tensor_shape.dim[0].size == 1 + i % 3
                counts[i] += 1
            except (grpc.RpcError, AssertionError) as error:
                errors.append(error)

    batcher = server.manager.resolve(requests[0].model_spec).signature("serving_images").batcher
    batches_before, rows_before = batcher.batches_run, batcher.rows_run
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert min(counts) > 0, f"a client starved: {counts}"
    batches, rows = batcher.batches_run - batches_before, batcher.rows_run - rows_before
    assert rows == sum(c * (1 + i % 3) for i, c in enumerate(counts))
    assert rows / batches > 1.5, f"{rows} rows in {batches} batches: concurrent requests were not batched"
