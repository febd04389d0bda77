"""File helpers that work on any artifact URI TensorFlow can open (local, gs://, hdfs://).

    copy_tree("model/Format-Serving", "optimized/Format-Serving")
    write_bytes("optimized/onnx/model.onnx", onnx_bytes)
"""
from __future__ import annotations

import os

import tensorflow as tf


def copy_tree(src: str, dst: str) -> None:
    """Recursive copy through tf.io.gfile (shutil cannot reach remote artifact stores)."""
    if not tf.io.gfile.isdir(src):
        raise FileNotFoundError(f"cannot copy {src}: no such directory")
    for dirpath, _, filenames in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(dirpath, src))
        tf.io.gfile.makedirs(target)
        for name in filenames:
            tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)


def write_bytes(path: str, data: bytes | str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
