"""Resumable training: Keras fit with step-level checkpoints of model + optimizer.

A Trainer killed mid-run restarts from its last checkpoint step, not from zero:

    result = fit_resumable(model, train_ds, val_ds, epochs=30, steps_per_epoch=20,
                           checkpoint_dir="runs/ckpt/abc", checkpoint_every=50)
    result.resumed_from_step   # 0 on a fresh start

The data stream is not replayed to the exact batch after a resume (the dataset restarts),
which changes the order of examples seen, not the number of steps.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from serving.atomic import atomic_write_json

log = logging.getLogger("pipeline.train")


@dataclass
class FitResult:
    history: dict = field(default_factory=dict)
    resumed_from_step: int = 0
    final_step: int = 0
    stopped_early: bool = False


class _EpochHistory(keras.callbacks.Callback):
    """Appends each epoch's logs to the saved history, so a kill loses at most one epoch."""

    def __init__(self, checkpoint_dir: str, history: dict):
        super().__init__()
        self.checkpoint_dir, self.history = checkpoint_dir, history

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))
        _save_partial_history(self.checkpoint_dir, self.history)


class _StepCheckpoint(keras.callbacks.Callback):
    def __init__(self, manager: tf.train.CheckpointManager, every: int):
        super().__init__()
        self.manager, self.every = manager, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)


def fit_resumable(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    *,
    epochs: int,
    steps_per_epoch: int,
    checkpoint_dir: str,
    checkpoint_every: int,
    restore_dir: str | None = None,
    validation_steps: int | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
) -> FitResult:
    """Train `epochs * steps_per_epoch` steps in total, resuming from `restore_dir`.

    `restore_dir` defaults to `checkpoint_dir`. A non-chief worker of a multi-worker run
    saves into its own throwaway `checkpoint_dir` but restores from the chief's, so that
    every worker restarts from the same step and weights.
    """
    restore_dir = restore_dir or checkpoint_dir
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _allow_keras3_multi_worker_fit(model, train_ds)
    if not model.optimizer.built:  # slots exist before a restore (a distributed caller builds in its scope)
        model.optimizer.build(model.trainable_variables)
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(restore_dir)
    result = FitResult()
    if latest:
        ckpt.restore(latest).expect_partial()
        result.resumed_from_step = int(model.optimizer.iterations.numpy())
        log.warning("resuming training from checkpoint step %d (%s)", result.resumed_from_step, latest)
        print(f"[train] resuming from checkpoint at step {result.resumed_from_step}", flush=True)
    history: dict[str, list] = _load_partial_history(restore_dir) if result.resumed_from_step else {}
    callbacks = list(callbacks or []) + [_StepCheckpoint(manager, checkpoint_every), _EpochHistory(checkpoint_dir, history)]
    log.info("checkpoints every %d steps in %s", checkpoint_every, checkpoint_dir)

    step = result.resumed_from_step
    epoch = step // steps_per_epoch
    total = epochs * steps_per_epoch
    while step < total and not result.stopped_early:
        steps_now = steps_per_epoch - (step % steps_per_epoch)  # finish a partial epoch first
        model.fit(
            train_ds,
            validation_data=val_ds,
            validation_steps=validation_steps,
            epochs=epochs if steps_now == steps_per_epoch else epoch + 1,
            initial_epoch=epoch,
            steps_per_epoch=steps_now,
            callbacks=callbacks,
            verbose=verbose,
        )
        step = int(model.optimizer.iterations.numpy())
        epoch = step // steps_per_epoch
        result.stopped_early = bool(getattr(model, "stop_training", False)) and step < total
    result.history, result.final_step = history, step
    return result


def _allow_keras3_multi_worker_fit(model: keras.Model, train_ds: tf.data.Dataset) -> None:
    """Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open):

    1. before the first step it reduces a distributed *data batch* with a cross-worker
       MEAN just to learn its shapes ("Attempt to convert a value (PerReplica ...)");
       we build the model, loss and metrics from the dataset's element_spec instead;
    2. it reduces each step's logs with `strategy.reduce("MEAN", v, axis=0)`, which fails
       on scalars ("Invalid reduction dimension 0"). Those logs are Keras metric results,
       whose state variables are already summed across workers, so each worker's local
       value is the global one: Keras' single-worker reduction path is correct here.
    Gradients are still all-reduced by the optimizer (identical weights on every worker
    are checked by tests/scale/test_train_workers.py).
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=train_ds.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    keras_tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False


def _history_path(checkpoint_dir: str) -> str:
    return os.path.join(checkpoint_dir, "history.json")


def _save_partial_history(checkpoint_dir: str, history: dict) -> None:
    atomic_write_json(_history_path(checkpoint_dir), history)


def _load_partial_history(checkpoint_dir: str) -> dict:
    try:
        with open(_history_path(checkpoint_dir)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def clear_checkpoints(checkpoint_dir: str) -> None:
    """Training finished: the checkpoints are no longer needed."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
