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
    validation_steps: int | None = None,
    callbacks: list | None = None,
    verbose: int | str = "auto",
) -> FitResult:
    """Train `epochs * steps_per_epoch` steps in total, resuming from `checkpoint_dir`."""
    model.optimizer.build(model.trainable_variables)  # slots exist before a restore
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=2)
    result = FitResult()
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        result.resumed_from_step = int(model.optimizer.iterations.numpy())
        log.warning("resuming training from checkpoint step %d (%s)", result.resumed_from_step, manager.latest_checkpoint)
        print(f"[train] resuming from checkpoint at step {result.resumed_from_step}", flush=True)
    history: dict[str, list] = _load_partial_history(checkpoint_dir) if result.resumed_from_step else {}
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
