"""Training input throughput: the pipeline's real input function vs in-memory tensors.

One model, one batch size, one run. Images/s of `model.fit` fed by the Trainer's own input
function (Transform's TFRecords through TFX's data accessor, components/train/trainer.py
`_dataset`), with and without the config's augmentation, divided by images/s of the same
model fed from in-memory tensors. Goals: >= 0.95 without augmentation, >= 0.90 with.

    make run                                  # once: creates the Transform output it reads
    .venv/bin/python bench/train_throughput.py [--config configs/digits_cnn.yaml] [--steps 300]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import components.tfx_compat  # noqa: E402,F401
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tfx.components.trainer.fn_args_utils import DataAccessor  # noqa: E402
from tfx.components.util import tfxio_utils  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.train.augment import AugmentationPolicy  # noqa: E402
from components.train.trainer import _dataset, count_records, examples_to_cache  # noqa: E402  (the Trainer's own input function)
from models import create_model  # noqa: E402
from pipeline.build import paths  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.run import open_store  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_throughput.json")


def latest_transform_outputs(cfg: dict):
    """The newest Transform outputs of this pipeline in MLMD: (Examples artifact, graph uri)."""
    store = open_store(paths(cfg)["metadata"])
    marker = os.path.join("pipelines", cfg["pipeline_name"], "Transform")

    def newest(type_name):
        arts = [a for a in store.get_artifacts_by_type(type_name) if marker in a.uri and os.path.isdir(a.uri)]
        return max(arts, key=lambda a: a.id) if arts else None

    examples, graph = newest("Examples"), newest("TransformGraph")
    if examples is None or graph is None:
        sys.exit(f"no Transform output of pipeline '{cfg['pipeline_name']}' in {paths(cfg)['metadata']}: run `make run` first")
    artifact = standard_artifacts.Examples()
    artifact.uri = examples.uri
    artifact.split_names = examples.properties["split_names"].string_value
    return artifact, graph.uri


def images_per_second(model, datasets: dict, steps: int, batch_size: int, repeats: int) -> dict:
    """Median images/s per dataset; rounds interleave the inputs so load drift hits all alike."""
    for ds in datasets.values():
        model.fit(ds, steps_per_epoch=20, epochs=1, verbose=0)  # trace + warm each input pipeline
    rates = {name: [] for name in datasets}
    for _ in range(repeats):
        for name, ds in datasets.items():
            start = time.perf_counter()
            model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
            rates[name].append(steps * batch_size / (time.perf_counter() - start))
    print("rounds (images/s):", {n: [round(x) for x in r] for n, r in rates.items()}, flush=True)
    return {name: statistics.median(r) for name, r in rates.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/digits_cnn.yaml")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    train = cfg["train"]
    batch = train["batch_size"]
    examples, graph_uri = latest_transform_outputs(cfg)
    tft_output = tft.TFTransformOutput(graph_uri)
    fn_args = types.SimpleNamespace(
        data_accessor=DataAccessor(
            tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
            record_batch_factory=None,
            data_view_decode_fn=None,
        )
    )
    files = [os.path.join(examples.uri, "Split-train", "*")]
    image_shape = tuple(tft_output.transformed_feature_spec()["image"].shape)
    cache = examples_to_cache(count_records(files), image_shape)  # the Trainer's own rule
    pipeline_ds = _dataset(fn_args, files, tft_output, batch, shuffle=True, repeat=True, seed=0, cache_examples=cache).prefetch(tf.data.AUTOTUNE)

    # The same examples, already transformed, held as in-memory tensors.
    xs, ys = [], []
    for x, y in _dataset(fn_args, files, tft_output, batch, shuffle=False, repeat=False, seed=0):
        xs.append(x)
        ys.append(y)
    x_mem, y_mem = tf.concat(xs, 0), tf.concat(ys, 0)
    memory_ds = (
        tf.data.Dataset.from_tensor_slices((x_mem, y_mem)).cache().shuffle(len(y_mem), seed=0)
        .repeat().batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    )
    num_classes = int(tf.reduce_max(y_mem)) + 1
    policy = AugmentationPolicy.from_config(train["augmentation"], num_classes=num_classes)
    augmented_ds = policy.build(train["seed"]).apply(
        _dataset(fn_args, files, tft_output, batch, shuffle=True, repeat=True, seed=0, cache_examples=cache)
    ).prefetch(tf.data.AUTOTUNE)

    keras.utils.set_random_seed(0)
    model = create_model(cfg["model"]["name"], image_shape, num_classes, **cfg["model"]["hparams"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    rates = images_per_second(
        model, {"in_memory": memory_ds, "pipeline": pipeline_ds, "pipeline_augmented": augmented_ds}, args.steps, batch, args.repeats
    )
    result = {
        "config": args.config, "model": cfg["model"]["name"], "batch_size": batch, "steps": args.steps,
        "repeats": args.repeats, "augmentation": policy.describe(), "images_per_second": rates,
        "ratio_pipeline": rates["pipeline"] / rates["in_memory"],
        "ratio_pipeline_augmented": rates["pipeline_augmented"] / rates["in_memory"],
        "goals": {"ratio_pipeline": 0.95, "ratio_pipeline_augmented": 0.90},
        "pipeline_cached_in_memory": bool(cache), "cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"\n| input | images/s | ratio to in-memory | goal |\n|---|---|---|---|\n"
        f"| in-memory tensors | {rates['in_memory']:.0f} | 1.00 | |\n"
        f"| pipeline (TFX data accessor) | {rates['pipeline']:.0f} | {result['ratio_pipeline']:.2f} | >= 0.95 |\n"
        f"| pipeline + augmentation | {rates['pipeline_augmented']:.0f} | {result['ratio_pipeline_augmented']:.2f} | >= 0.90 |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
