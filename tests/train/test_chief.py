"""Multi-worker: only the chief writes to the real Trainer outputs.

No cluster runs here, so the strategy is a stand-in object carrying a real
SimpleClusterResolver (the only part `is_chief` reads); said plainly, as the standards ask.
"""
import os
import types

import tensorflow as tf

from components.train.trainer import is_chief, worker_paths


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
