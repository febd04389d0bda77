"""TFX Trainer `run_fn`: build the model from the registry, train it resumably, export it.

Reads Transform's materialized examples through TFX's data accessor, applies the
augmentation policy to the training stream only, writes TensorBoard logs, history,
an augmentation preview and a training summary into the model-run artifact, and exports
the serving SavedModel (components/train/export.py) with the Transform graph attached.
`fn_args.custom_config` is the validated `train:`/`model:` config plus dataset facts.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from components.train import augment as augment_lib
from components.train import optim, precision
from components.train.augment_preview import save_preview
from components.train.export import RawTransform, export_serving_model
from components.train.keys import HISTORY_FILE, TRAIN_SUMMARY_FILE, TRAINED_MODEL_FILE
from components.train.loop import clear_checkpoints, fit_resumable
from components.transform.preprocessing import LABEL_KEY, MODEL_INPUT_KEYS, VOCABULARY_NAME, FIRST_WORD_ID
from models import create_model

log = logging.getLogger("pipeline.train")
RAW_LABEL_FEATURES = (LABEL_KEY, "label_name")


# Parse the transformed training split once and keep it in memory when it fits: on small
# machines re-parsing TFRecords every epoch takes CPU from the training step itself.
CACHE_LIMIT_BYTES = 1 << 30


def examples_to_cache(n_train: int, input_shape) -> int:
    """How many training examples to cache in memory: all of them if they fit, else 0."""
    return n_train if n_train * math.prod(input_shape) * 8 <= CACHE_LIMIT_BYTES else 0


def _dataset(fn_args, files, tf_transform_output, batch_size: int, *, shuffle: bool, repeat: bool, seed: int, cache_examples: int = 0, input_key: str = "image"):
    """Batches of (model input, label) from Transform's output through TFX's data accessor.

    `cache_examples` > 0: read one pass, cache the parsed examples in memory, reshuffle
    them every epoch (a buffer of the whole split) and repeat.
    """
    stream = repeat and not cache_examples
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        label_key=LABEL_KEY,
        shuffle=shuffle and stream,
        shuffle_seed=seed if shuffle else None,
        num_epochs=None if stream else 1,
        drop_final_batch=stream,  # fixed batch shape for training; eval sees every example
    )
    ds = fn_args.data_accessor.tf_dataset_factory(files, options, tf_transform_output.transformed_metadata.schema)
    ds = ds.map(lambda x, y: (x[input_key], tf.reshape(y, [-1])), num_parallel_calls=tf.data.AUTOTUNE)
    if cache_examples:
        ds = ds.unbatch().cache()
        if shuffle:
            ds = ds.shuffle(cache_examples, seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat().batch(batch_size, drop_remainder=True)
    # Multi-worker: shard by element, not by file. Transform often writes one file per split,
    # and FILE sharding fails with fewer files than workers. Each worker reads the whole split.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def count_records(file_patterns) -> int:
    files = tf.io.gfile.glob(file_patterns if isinstance(file_patterns, list) else [file_patterns])
    n = 0
    for f in files:
        n += sum(1 for _ in tf.data.TFRecordDataset(f, compression_type="GZIP"))
    return n


def is_chief(strategy) -> bool:
    """Multi-worker training: only the chief writes to the real output paths."""
    return is_chief_task(getattr(strategy, "cluster_resolver", None))


def is_chief_task(resolver) -> bool:
    """The task named "chief", else worker 0 when the cluster has no chief; a single process is chief."""
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_name(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    return f"{resolver.task_type}:{resolver.task_id}" if resolver is not None and resolver.task_type else "local:0"


def worker_paths(chief: bool, *paths: str) -> list[str]:
    """Non-chief workers still take part in saving (collective ops) but into throwaway dirs."""
    return list(paths) if chief else [tempfile.mkdtemp(prefix="worker-") for _ in paths]


def weights_digest(model) -> str:
    """SHA-256 of all weights: equal on every worker of a synchronous (all-reduce) run."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def checkpoint_key(fn_args, cfg: dict) -> str:
    """Same inputs + same config -> same checkpoint folder across Trainer executions."""
    ident = json.dumps({"train": sorted(fn_args.train_files), "tft": fn_args.transform_output, "cfg": cfg}, sort_keys=True)
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def run_fn(fn_args) -> None:
    cfg = fn_args.custom_config
    train_cfg, model_cfg = cfg["train"], cfg["model"]
    modality, label_names = cfg.get("modality", "image"), cfg["label_names"]
    input_shape, input_key = tuple(cfg["input_shape"]), MODEL_INPUT_KEYS[modality]
    num_classes = len(label_names)
    keras.utils.set_random_seed(train_cfg["seed"])

    applied_precision, precision_reason = precision.apply_precision(train_cfg["precision"])
    strategy, strategy_desc = precision.select_strategy()
    log.info("precision %s (%s); strategy %s", applied_precision, precision_reason, strategy_desc)

    chief = is_chief(strategy)
    model_run_dir, serving_model_dir = worker_paths(chief, fn_args.model_run_dir, fn_args.serving_model_dir)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = train_cfg["batch_size"] * strategy.num_replicas_in_sync
    n_train = count_records(fn_args.train_files)
    steps_per_epoch = max(1, n_train // batch_size)
    total_steps = steps_per_epoch * train_cfg["epochs"]

    policy = augment_lib.AugmentationPolicy.from_config(train_cfg["augmentation"], num_classes)
    one_hot = policy.mixes_labels  # mixup/cutmix give soft labels

    cache_examples = examples_to_cache(n_train, input_shape)
    train_ds = _dataset(
        fn_args, fn_args.train_files, tf_transform_output, batch_size, shuffle=True, repeat=True, seed=train_cfg["seed"],
        cache_examples=cache_examples, input_key=input_key,
    )
    val_ds = _dataset(fn_args, fn_args.eval_files, tf_transform_output, batch_size, shuffle=False, repeat=False, seed=0, input_key=input_key)
    train_ds = policy.build(train_cfg["seed"]).apply(train_ds)  # train split only; never eval/serving
    if one_hot:
        to_one_hot = lambda x, y: (x, y if y.dtype.is_floating else tf.one_hot(y, num_classes))  # noqa: E731
        train_ds, val_ds = train_ds.map(to_one_hot), val_ds.map(to_one_hot)
    train_ds, val_ds = train_ds.prefetch(tf.data.AUTOTUNE), val_ds.cache().prefetch(tf.data.AUTOTUNE)

    hparams = dict(model_cfg["hparams"])
    if modality == "image":
        _write_preview(fn_args, train_cfg, tf_transform_output, policy, model_run_dir)
    else:  # the embedding covers exactly the Transform's vocabulary (+ padding and OOV ids)
        hparams["vocab_size"] = tf_transform_output.vocabulary_size_by_name(VOCABULARY_NAME) + FIRST_WORD_ID
        log.info("text model: vocabulary of %d ids (incl. padding and OOV)", hparams["vocab_size"])

    with strategy.scope():
        model = create_model(model_cfg["name"], input_shape, num_classes, **hparams)
        schedule = optim.build_schedule(
            train_cfg["schedule"], train_cfg["learning_rate"], total_steps,
            warmup_steps=int(train_cfg["warmup_epochs"] * steps_per_epoch), **train_cfg.get("schedule_args", {}),
        )
        optimizer = optim.build_optimizer(
            train_cfg["optimizer"], schedule, weight_decay=train_cfg["weight_decay"], momentum=train_cfg["momentum"],
            nesterov=train_cfg.get("nesterov", False),
        )
        optimizer = precision.wrap_optimizer(optimizer, applied_precision)
        model.compile(
            optimizer=optimizer,
            loss=(
                keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=train_cfg["label_smoothing"])
                if one_hot else optim.build_loss(train_cfg["label_smoothing"])
            ),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot else keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=train_cfg["jit_compile"],
        )
        optimizer.build(model.trainable_variables)  # slot variables belong to the strategy's scope

    callbacks = [keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, "tensorboard"), profile_batch=0)]
    if train_cfg["early_stopping_patience"]:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=train_cfg["early_stopping_patience"], restore_best_weights=True)
        )
    # Every worker restores from the chief's checkpoints (shared storage) and saves its own
    # share of each checkpoint into a throwaway directory, as TensorFlow's multi-worker guide asks.
    shared_ckpt_dir = os.path.join(cfg["checkpoint_root"], checkpoint_key(fn_args, cfg))
    (ckpt_dir,) = worker_paths(chief, shared_ckpt_dir)
    result = fit_resumable(
        model, train_ds, val_ds,
        epochs=train_cfg["epochs"], steps_per_epoch=steps_per_epoch,
        checkpoint_dir=ckpt_dir, restore_dir=shared_ckpt_dir, checkpoint_every=train_cfg["checkpoint_every_steps"],
        callbacks=callbacks, verbose=_keras_verbosity(),
    )

    raw_spec = {k: v for k, v in tf_transform_output.raw_feature_spec().items() if k not in RAW_LABEL_FEATURES}
    transform = RawTransform(raw_spec, tf_transform_output.transform_features_layer())
    log.info("exporting the serving SavedModel to %s", serving_model_dir)
    export_serving_model(
        model, serving_model_dir, label_names=label_names, transform=transform, modality=modality,
        image_shape=input_shape if modality == "image" else None,
    )
    # The Keras model itself, for the training/serving skew check (components/infra_validate/skew.py).
    model.save(os.path.join(model_run_dir, TRAINED_MODEL_FILE))
    summary = {
        "model": model_cfg["name"], "hparams": hparams, "params": int(model.count_params()), "modality": modality,
        "precision": applied_precision, "precision_reason": precision_reason, "strategy": strategy_desc,
        "epochs": train_cfg["epochs"], "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "final_step": result.final_step, "resumed_from_step": result.resumed_from_step,
        "stopped_early": result.stopped_early, "train_examples": n_train, "batch_size": batch_size,
        "task": task_name(strategy), "weights_sha256": weights_digest(model),
    }
    _write_json(os.path.join(model_run_dir, HISTORY_FILE), result.history)
    _write_json(os.path.join(model_run_dir, TRAIN_SUMMARY_FILE), summary)
    clear_checkpoints(ckpt_dir)
    if not chief:
        for throwaway in (model_run_dir, serving_model_dir):
            shutil.rmtree(throwaway, ignore_errors=True)
    if summary["task"] != "local:0":  # one line per worker, compared by `python -m pipeline train-workers`
        print(f"[train] task {summary['task']} final step {result.final_step} weights sha256 {summary['weights_sha256']}", flush=True)
    keras.mixed_precision.set_global_policy("float32")  # components share this process


def _write_preview(fn_args, train_cfg, tf_transform_output, policy, model_run_dir: str) -> None:
    ds = _dataset(fn_args, fn_args.train_files, tf_transform_output, 8, shuffle=False, repeat=False, seed=0)
    images, _ = next(iter(ds))
    save_preview(images.numpy(), policy, train_cfg["seed"], os.path.join(model_run_dir, "augmentation_preview.png"))


def _keras_verbosity():
    if os.environ.get("PIPELINE_QUIET"):
        return 0
    return 1 if sys.stdout.isatty() else 2


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
