"""Server-side dynamic batching: concurrent requests to one signature run as one batch.

Requests are concatenated along dim 0, run once, and split back. There is no dispatcher
thread: the first caller to find a free batch slot becomes the *leader*, runs the batch
in its own thread, and on finishing hands the slot to the oldest waiting caller. At low
load a request therefore runs at once, in its own thread, with no thread hop; under load
every signature call carries many requests.

`batch_timeout_micros` is how long a leader may wait for more requests, but it waits only
while fewer rows are queued than the recent load suggests will come (the peak number of
rows queued or running over the last half second), less the rows other batches are
running, and with N batch threads 1/N of it. One client never waits; 32 closed-loop
clients fill batches of 32 (with two batch threads: alternating batches of 16).

A request with more rows than `max_batch_size` is split into chunks of that size, each
queued like any request (so other clients' requests run between them), and the outputs
are joined: it never runs as one giant batch, so its memory peak is one batch's.

    batcher = Batcher(run_signature, BatchingOptions(max_batch_size=32))
    outputs = batcher.submit({"images": images}, rows=len(images))
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable, Mapping

import numpy as np
from google.protobuf import text_format

from serving.server.errors import ServingError

Arrays = Mapping[str, np.ndarray]

_QUEUED, _PROMOTED, _TAKEN, _DONE = range(4)
_DEMAND_WINDOW_S = 0.5


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters, with this server's defaults.

    Args:
        max_batch_size: most rows in one signature call. Larger requests are split.
        batch_timeout_micros: longest a batch waits to fill (only while more rows are
            expected, see the module docstring). 0 = never wait.
        num_batch_threads: how many batches may run at once.
        max_enqueued_batches: queue limit, in batches; beyond it requests get UNAVAILABLE.
        allowed_batch_sizes: if set, batches are padded up to the next of these sizes
            (increasing, the last equal to max_batch_size), as TF Serving does.

    Example:

    >>> BatchingOptions.from_text("max_batch_size { value: 16 } batch_timeout_micros { value: 0 }").max_batch_size
    16
    """

    max_batch_size: int = 64
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 1
    max_enqueued_batches: int = 100
    allowed_batch_sizes: tuple = ()

    def __post_init__(self):
        for field in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, field) < 1:
                raise ValueError(f"batching parameter {field} must be >= 1, got {getattr(self, field)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise ValueError(
                f"allowed_batch_sizes {sizes} must be increasing and end with max_batch_size "
                f"({self.max_batch_size}), e.g. [8, 16, {self.max_batch_size}]"
            )

    @classmethod
    def from_text(cls, text: str) -> "BatchingOptions":
        """Parses a TF Serving BatchingParameters text proto (--batching_parameters_file)."""
        from serving.tfs_protos import BatchingParameters

        params = BatchingParameters()
        try:
            text_format.Parse(text, params)
        except text_format.ParseError as error:
            raise ValueError(f"batching parameters are not a valid BatchingParameters text proto: {error}") from None
        if params.pad_variable_length_inputs:
            raise ValueError("pad_variable_length_inputs is not supported by the embedded server; remove it")
        values = {
            field: getattr(params, field).value
            for field in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
            if params.HasField(field)
        }
        return cls(**values, allowed_batch_sizes=tuple(params.allowed_batch_sizes))

    @classmethod
    def from_file(cls, path: str) -> "BatchingOptions":
        with open(path) as f:
            return cls.from_text(f.read())


class _Task:
    __slots__ = ("arrays", "rows", "state", "holds_slot", "event", "outputs", "error")

    def __init__(self, arrays: Arrays, rows: int):
        self.arrays = arrays
        self.rows = rows
        self.state = _QUEUED
        self.holds_slot = False
        self.event = threading.Event()
        self.outputs = None
        self.error = None


class _DemandPeak:
    """Peak rows in the system over the current and the previous window."""

    def __init__(self):
        self._current = self._previous = 0
        self._window_start = time.monotonic()

    def observe(self, rows: int) -> None:
        now = time.monotonic()
        if now - self._window_start > _DEMAND_WINDOW_S:
            self._previous, self._current, self._window_start = self._current, 0, now
        self._current = max(self._current, rows)

    @property
    def peak(self) -> int:
        return max(self._current, self._previous)


class Batcher:
    """Runs `run(arrays) -> outputs` on batches formed from concurrent `submit` calls.

    `run` must accept and return dicts of arrays whose dim 0 is the batch.
    """

    def __init__(self, run: Callable[[Arrays], dict], options: BatchingOptions):
        self._run = run
        self._options = options
        self._timeout_s = options.batch_timeout_micros / 1e6
        self._max_queued = options.max_enqueued_batches * options.max_batch_size
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # a leader waiting for its batch to fill
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._running_rows = 0
        self._leaders = 0
        self._demand = _DemandPeak()
        self.batches_run = 0  # for tests and the benchmark: how many signature calls
        self.rows_run = 0

    @property
    def options(self) -> BatchingOptions:
        return self._options

    def submit(self, arrays: Arrays, rows: int) -> dict:
        """Runs `arrays` (with `rows` rows) as part of a batch; returns this request's outputs."""
        step = self._options.max_batch_size
        if rows <= step:
            return self._submit_batchable(arrays, rows)
        parts = [
            self._submit_batchable({key: value[start:start + step] for key, value in arrays.items()}, min(step, rows - start))
            for start in range(0, rows, step)
        ]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _submit_batchable(self, arrays: Arrays, rows: int) -> dict:
        task = _Task(arrays, rows)
        with self._lock:
            if len(self._queue) >= self._max_queued:
                raise ServingError.unavailable(
                    f"the batch queue is full ({len(self._queue)} requests waiting); retry with backoff"
                )
            self._queue.append(task)
            self._queued_rows += rows
            self._demand.observe(self._queued_rows + self._running_rows)
            if self._leaders < self._options.num_batch_threads:
                self._leaders += 1
                task.holds_slot = True
            else:
                self._more.notify_all()  # every waiting leader (one per batch thread) re-checks
        if not task.holds_slot:
            self._wait(task)
        if task.state != _DONE:
            self._lead(task)
        if task.error is not None:
            raise task.error
        return task.outputs

    def _wait(self, task: _Task) -> None:
        """Blocks until `task` is done or promoted to leader."""
        while True:
            task.event.wait()
            with self._lock:
                if task.state == _DONE:
                    if task.holds_slot:  # promoted, then run by another leader
                        self._release_slot(task)
                    return
                task.event.clear()
                if task.state == _PROMOTED:
                    return
                if task.holds_slot:  # _TAKEN by another leader after promotion: pass the slot on
                    self._release_slot(task)

    def _lead(self, own: _Task) -> None:
        while True:
            with self._lock:
                if own.state == _DONE:
                    self._release_slot(own)
                    return
                batch = self._take_batch() if own.state != _TAKEN else []
                if not batch:  # `own` is running in another leader's batch
                    self._release_slot(own)
            if not batch:
                self._wait(own)
                return
            self._execute(batch)

    def _release_slot(self, task: _Task) -> None:
        """Lock held: give `task`'s leader slot to the oldest queued task, or free it."""
        task.holds_slot = False
        for waiting in self._queue:
            if waiting.state == _QUEUED:
                waiting.state = _PROMOTED
                waiting.holds_slot = True
                waiting.event.set()
                return
        self._leaders -= 1

    def _take_batch(self) -> list:
        """Lock held: pops up to max_batch_size rows, first waiting if more are expected."""
        max_rows = self._options.max_batch_size
        if self._timeout_s > 0 and self._queued_rows < self._wanted_rows():
            deadline = time.monotonic() + self._timeout_s
            while self._queued_rows < self._wanted_rows():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more.wait(remaining):
                    break
        if self._options.num_batch_threads > 1:  # leave the other threads their share
            max_rows = max(1, min(max_rows, self._share()))
        batch, rows = [], 0
        while self._queue and (not batch or rows + self._queue[0].rows <= max_rows):
            task = self._queue.popleft()
            task.state = _TAKEN
            rows += task.rows
            batch.append(task)
        self._queued_rows -= rows
        self._running_rows += rows
        if self._queue:  # another waiting leader may now have what it waits for
            self._more.notify_all()
        return batch

    def _wanted_rows(self) -> int:
        """Lock held: how many queued rows a leader waits for (up to the timeout).

        The recent peak, less the rows already running in other batches (they come back
        only when those finish), and with several batch threads only that thread's share
        of the peak: closed-loop callers then split into groups whose batches alternate,
        one group's batch running in TensorFlow while the other's requests travel, instead
        of all callers moving in lockstep through one batch at a time. A batch then
        takes at most that share (see `_take_batch`).
        """
        return min(self._options.max_batch_size, self._demand.peak - self._running_rows, self._share())

    def _share(self) -> int:
        """Lock held: one batch thread's share of the recent peak (all of it with one thread)."""
        return -(-self._demand.peak // self._options.num_batch_threads)

    def _execute(self, batch: list) -> None:
        try:
            results = self._run_batch(batch)
        except Exception as error:  # noqa: BLE001  (isolate the request that failed)
            results = self._run_each(batch) if len(batch) > 1 else [error]
        with self._lock:
            self._running_rows -= sum(task.rows for task in batch)
            self.batches_run += 1
            self.rows_run += sum(task.rows for task in batch)
            for task, result in zip(batch, results):
                if isinstance(result, Exception):
                    task.error = result
                else:
                    task.outputs = result
                task.state = _DONE
                task.event.set()

    def _run_each(self, batch: list) -> list:
        """After a failed batch: run each request alone, so one bad request fails alone."""
        results = []
        for task in batch:
            try:
                results.append(self._run(task.arrays))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results

    def _run_batch(self, batch: list) -> list:
        if len(batch) == 1:
            return [self._run(batch[0].arrays)]
        sizes = [task.rows for task in batch]
        total = sum(sizes)
        merged = {key: np.concatenate([task.arrays[key] for task in batch]) for key in batch[0].arrays}
        padded = self._padded_size(total)
        if padded > total:  # repeat the last row, as TF Serving pads to allowed_batch_sizes
            merged = {key: np.concatenate([value, np.repeat(value[-1:], padded - total, axis=0)]) for key, value in merged.items()}
        outputs = self._run(merged)
        for key, value in outputs.items():
            if np.ndim(value) == 0 or value.shape[0] != padded:
                raise ServingError.invalid_argument(
                    f"output '{key}' has shape {list(np.shape(value))}, not a batch of {padded}; "
                    "this signature cannot be batched (start the server with --enable_batching=false)"
                )
        offsets = np.cumsum([0] + sizes)
        return [{key: value[start:end] for key, value in outputs.items()} for start, end in zip(offsets[:-1], offsets[1:])]

    def _padded_size(self, rows: int) -> int:
        for size in self._options.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows
