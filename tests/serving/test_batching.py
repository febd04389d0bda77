"""The batcher on a plain numpy function: correctness under concurrency, limits, options."""
import threading
import time

import grpc
import numpy as np
import pytest

from serving.server.batching import Batcher, BatchingOptions
from serving.server.errors import ServingError


class Recorder:
    """A real batch function (y = 2x, row sums) that records the batch sizes it saw."""

    def __init__(self, delay: float = 0.0, fail_on=None):
        self.sizes = []
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, arrays):
        x = arrays["x"]
        self.sizes.append(len(x))
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ServingError.invalid_argument("bad row")
        time.sleep(self.delay)
        return {"y": x * 2, "sum": x.sum(axis=1)}


def _run_concurrently(batcher, count: int, rows: int = 1):
    results, errors = {}, {}
    barrier = threading.Barrier(count)

    def client(i):
        x = np.full((rows, 3), i, dtype=np.int64)
        barrier.wait()
        try:
            results[i] = batcher.submit({"x": x}, rows)
        except ServingError as error:
            errors[i] = error

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    recorder = Recorder(delay=0.01)
    batcher = Batcher(recorder, BatchingOptions(max_batch_size=8, batch_timeout_micros=2000))
    results, errors = _run_concurrently(batcher, 24, rows=2)
    assert errors == {}
    for i, outputs in results.items():
        np.testing.assert_array_equal(outputs["y"], np.full((2, 3), 2 * i))
        np.testing.assert_array_equal(outputs["sum"], [3 * i, 3 * i])
    assert sum(recorder.sizes) == 48
    assert max(recorder.sizes) <= 8
    assert len(recorder.sizes) < 24  # requests really were batched


def test_a_lone_request_does_not_wait_for_the_timeout():
    batcher = Batcher(Recorder(), BatchingOptions(max_batch_size=32, batch_timeout_micros=2_000_000))
    start = time.perf_counter()
    for _ in range(5):
        batcher.submit({"x": np.ones((1, 3))}, 1)
    assert time.perf_counter() - start < 1.0  # not 5 x 2 s: nothing else was expected


def test_a_failing_request_fails_alone():
    recorder = Recorder(delay=0.005, fail_on=7)
    batcher = Batcher(recorder, BatchingOptions(max_batch_size=16, batch_timeout_micros=5000))
    results, errors = _run_concurrently(batcher, 12)
    assert set(errors) == {7}
    assert errors[7].code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(results) == 11


def test_oversized_requests_are_split_into_max_batches_and_padding_uses_allowed_sizes():
    recorder = Recorder()
    batcher = Batcher(recorder, BatchingOptions(max_batch_size=4, allowed_batch_sizes=(2, 4), batch_timeout_micros=0))
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    outputs = batcher.submit({"x": x}, 10)
    assert recorder.sizes == [4, 4, 2]  # never one batch of 10 (issue 11)
    np.testing.assert_array_equal(outputs["y"], x * 2)  # rows come back whole and in order
    np.testing.assert_array_equal(outputs["sum"], x.sum(axis=1))
    outputs = batcher.submit({"x": np.ones((3, 3))}, 3)
    assert outputs["y"].shape == (3, 3)
    assert recorder.sizes[-1] in (3, 4)  # a lone request runs as is; batches are padded


def test_full_queue_is_unavailable():
    release = threading.Event()

    def slow(arrays):
        release.wait(10)
        return {"y": arrays["x"]}

    batcher = Batcher(slow, BatchingOptions(max_batch_size=1, max_enqueued_batches=2, num_batch_threads=1, batch_timeout_micros=0))
    threads = [threading.Thread(target=batcher.submit, args=({"x": np.ones((1, 1))}, 1)) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # one running, two queued: the queue (2 batches of 1) is full
    with pytest.raises(ServingError) as error:
        batcher.submit({"x": np.ones((1, 1))}, 1)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    release.set()
    for thread in threads:
        thread.join()


def test_batching_parameters_text_proto():
    options = BatchingOptions.from_text(
        "max_batch_size { value: 32 } batch_timeout_micros { value: 500 } num_batch_threads { value: 2 } "
        "max_enqueued_batches { value: 10 } allowed_batch_sizes: 8 allowed_batch_sizes: 32"
    )
    assert options == BatchingOptions(32, 500, 2, 10, (8, 32))
    with pytest.raises(ValueError, match="allowed_batch_sizes"):
        BatchingOptions.from_text("max_batch_size { value: 32 } allowed_batch_sizes: 8")
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="BatchingParameters"):
        BatchingOptions.from_text("max_batch_size: 3")


def test_with_two_batch_threads_both_run_while_callers_wait():
    """32 closed-loop callers, 2 batch threads: each batch takes one thread's share (16),
    both threads run batches, and no waiting leader misses that its rows have arrived."""
    lock, spans, sizes = threading.Lock(), [], []

    def run(arrays):
        start = time.monotonic()
        time.sleep(0.02)
        with lock:
            spans.append((start, time.monotonic()))
            sizes.append(len(arrays["x"]))
        return {"y": arrays["x"] * 2}

    batcher = Batcher(run, BatchingOptions(max_batch_size=32, batch_timeout_micros=10_000, num_batch_threads=2))
    stop = time.monotonic() + 1.5
    done = [0]

    def caller():
        while time.monotonic() < stop:
            batcher.submit({"x": np.ones((1, 3), dtype=np.int64)}, 1)
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=caller) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done[0] == sum(sizes)
    overlapping = sum(any(s < end and start < e for j, (s, e) in enumerate(spans) if j != i) for i, (start, end) in enumerate(spans))
    assert overlapping > 0, sizes  # the two batch threads did run at the same time
    assert max(sizes) <= 16  # each thread takes its share of the 32 callers
    assert len(spans) >= 60, sizes  # back to back (20 ms each), no leader sitting out its timeout
