"""Multi-worker: who is chief, where non-chief workers write, and where they restore from.

The two-process training itself runs in tests/scale/test_train_workers.py. Here the chief
rule is checked on TensorFlow's own cluster resolvers (a strategy object needs a running
cluster, so `strategy_for` carries a real SimpleClusterResolver, the only part `is_chief`
reads), and the shared-restore rule on a real single-process Keras fit.
"""
import glob
import json
import os
import types

import keras
import numpy as np
import tensorflow as tf

from components.train.loop import fit_resumable
from components.train.trainer import is_chief, is_chief_task, weights_digest, worker_paths
from pipeline.train_workers import FINAL_LINE, free_ports, tf_config


def strategy_for(task_type, task_id, cluster):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_single_process_strategy_is_chief():
    assert is_chief(tf.distribute.get_strategy())


def test_worker_zero_is_chief_without_a_chief_task():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert is_chief(strategy_for("worker", 0, cluster))
    assert not is_chief(strategy_for("worker", 1, cluster))


def test_explicit_chief_wins_over_worker_zero():
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    assert is_chief(strategy_for("chief", 0, cluster))
    assert not is_chief(strategy_for("worker", 0, cluster))


def test_non_chief_writes_to_throwaway_dirs(tmp_path):
    real = [str(tmp_path / "model_run"), str(tmp_path / "serving")]
    assert worker_paths(True, *real) == real
    temp = worker_paths(False, *real)
    assert len(temp) == 2 and all(os.path.isdir(p) and not p.startswith(str(tmp_path)) for p in temp)


def test_chief_from_tf_config_as_the_launcher_writes_it(monkeypatch):
    ports = free_ports(2)
    assert len(set(ports)) == 2
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", tf_config(ports, index))
        assert is_chief_task(tf.distribute.cluster_resolver.TFConfigClusterResolver()) is chief
    assert json.loads(tf_config(ports, 1))["cluster"]["worker"] == [f"127.0.0.1:{p}" for p in ports]


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, np.arange(32) % 3)).batch(8, drop_remainder=True).repeat()


def test_non_chief_restores_from_the_chiefs_checkpoint_and_saves_elsewhere(tmp_path):
    chief_dir, own_dir = str(tmp_path / "chief"), str(tmp_path / "own")
    chief = _model()
    fit_resumable(chief, _data(), None, epochs=1, steps_per_epoch=4, checkpoint_dir=chief_dir, checkpoint_every=2, verbose=0)
    before = sorted(os.listdir(chief_dir))
    worker = _model()
    result = fit_resumable(worker, _data(), None, epochs=2, steps_per_epoch=4, checkpoint_dir=own_dir, restore_dir=chief_dir,
                           checkpoint_every=2, verbose=0)
    assert result.resumed_from_step == 4 and result.final_step == 8
    assert sorted(os.listdir(chief_dir)) == before  # the chief's checkpoints are read, never written
    assert glob.glob(os.path.join(own_dir, "ckpt-8.index"))
    fresh = _model()  # without restore_dir the same call starts from zero
    assert fit_resumable(fresh, _data(), None, epochs=1, steps_per_epoch=4, checkpoint_dir=str(tmp_path / "x"),
                         checkpoint_every=2, verbose=0).resumed_from_step == 0


def test_weights_digest_tells_equal_from_different_weights():
    a, b = _model(), _model()
    assert weights_digest(a) == weights_digest(b)
    b.layers[0].kernel.assign_add(tf.fill(b.layers[0].kernel.shape, 1e-7))
    assert weights_digest(a) != weights_digest(b)
    line = f"[train] task worker:1 final step 18 weights sha256 {weights_digest(a)}"
    assert FINAL_LINE.findall(line) == [("worker:1", "18", weights_digest(a))]
