"""Where examples come from: a TFDS dataset, an image folder, or tf.Example TFRecords.

Each source yields `Record(value: bytes, label: int)` per split, where the value is a PNG
image (`modality` "image") or UTF-8 text (`modality` "text", TFDS text datasets such as
imdb_reviews), and knows its label names and, for images, the image shape. Errors name
the dataset or path and how to fix it.

    src = open_source({"source": "tfds", "name": "sklearn_digits", "data_dir": "runs/tfds", ...})
    for rec in src.records("train"): ...
"""
from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BUILTIN_BUILDERS = ("sklearn_digits", "synthetic_reviews")  # prepared locally, no network needed


class DataSourceError(ValueError):
    """The configured data cannot be read; the message says why and how to fix it."""


@dataclass
class Record:
    value: bytes  # PNG bytes for images, UTF-8 for text
    label: int


def encode_png(image: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(image).numpy()


class TfdsSource:
    """A TFDS dataset prepared in `data_dir` (or one of the project's own builders).

    Image classification sets need `image` and `label` features, text classification sets
    (imdb_reviews, the project's synthetic_reviews) `text` and `label`.
    """

    def __init__(self, name: str, version: str | None, data_dir: str):
        import tensorflow_datasets as tfds

        import components.ingest.digits_builder  # noqa: F401  (registers sklearn_digits)
        import components.ingest.reviews_builder  # noqa: F401  (registers synthetic_reviews)

        self.name, self.data_dir = name, data_dir
        spec = f"{name}:{version}" if version else name
        try:
            self.builder = tfds.builder(spec, data_dir=data_dir)
        except Exception as e:  # DatasetNotFoundError and friends
            raise DataSourceError(
                f"unknown TFDS dataset '{spec}': {str(e).splitlines()[0]}. "
                f"Check data.name / data.version (e.g. sklearn_digits, mnist, fashion_mnist, cifar10)."
            ) from None
        if not self.builder.is_prepared():
            if name in BUILTIN_BUILDERS:
                self.builder.download_and_prepare()
            else:
                raise DataSourceError(
                    f"TFDS dataset '{spec}' is not prepared in data_dir '{data_dir}', and this machine cannot "
                    f"download it (no internet). On a machine with internet run:\n"
                    f"  python -c \"import tensorflow_datasets as tfds; tfds.builder('{spec}', data_dir='DIR').download_and_prepare()\"\n"
                    f"then copy DIR/{name} to {data_dir}/{name} here (or set data.data_dir to it)."
                )
        features = self.builder.info.features
        kinds = [k for k in ("image", "text") if k in features]
        if not kinds or "label" not in features or not hasattr(features["label"], "names"):
            raise DataSourceError(
                f"TFDS dataset '{spec}' has features {sorted(features.keys())}; this pipeline ingests classification "
                f"datasets with an 'image' or 'text' feature and a 'label' class feature."
            )
        self.modality = kinds[0]
        self.label_names = list(features["label"].names)
        self.image_shape = list(features["image"].shape) if self.modality == "image" else None
        self.splits = list(self.builder.info.splits.keys())

    def num_examples(self, split: str) -> int:
        return self.builder.info.splits[split].num_examples

    def records(self, split: str) -> Iterator[Record]:
        import tensorflow as tf

        if split.split("[")[0] not in self.splits:  # TFDS slices like "train[:90%]" are fine
            raise DataSourceError(f"TFDS dataset '{self.name}' has no split '{split}'. Its splits: {', '.join(self.splits)}")
        ds = self.builder.as_dataset(split=split, shuffle_files=False)
        encode = tf.io.encode_png if self.modality == "image" else tf.identity
        ds = ds.map(lambda ex: (encode(ex[self.modality]), ex["label"]))
        for png, label in ds.as_numpy_iterator():
            yield Record(png, int(label))


class ImageFolderSource:
    """`<root>/<split>/<label>/*.png|jpg`, any size, grayscale or RGB; resized to image_shape."""

    modality = "image"

    def __init__(self, root: str, image_shape: list[int] | None, splits: list[str]):
        if not os.path.isdir(root):
            raise DataSourceError(f"image folder '{root}' does not exist (data.root); expected <root>/<split>/<label>/*.png")
        self.root, self.name = root, os.path.basename(os.path.normpath(root))
        labels = set()
        for split in splits:
            split_dir = os.path.join(root, split)
            if not os.path.isdir(split_dir):
                raise DataSourceError(f"image folder split '{split_dir}' does not exist; expected <root>/<split>/<label>/*.png")
            labels.update(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
        if not labels:
            raise DataSourceError(f"image folder '{root}' has no <split>/<label>/ folders")
        self.label_names = sorted(labels)
        self.image_shape = image_shape or self._infer_shape(splits[0])

    def _files(self, split: str):
        for label_id, label in enumerate(self.label_names):
            for path in sorted(glob.glob(os.path.join(self.root, split, label, "*"))):
                if path.lower().endswith(IMAGE_EXTENSIONS):
                    yield path, label_id

    def _infer_shape(self, split: str) -> list[int]:
        from PIL import Image

        shapes = set()
        for path, _ in self._files(split):
            with Image.open(path) as im:
                shapes.add((im.height, im.width, 1 if im.mode in ("L", "1", "I;16") else 3))
            if len(shapes) > 1:
                raise DataSourceError(
                    f"images under '{self.root}' have different sizes {sorted(shapes)[:2]}; set data.image_shape: [H, W, C] to resize them"
                )
        if not shapes:
            raise DataSourceError(f"no .png/.jpg images under '{os.path.join(self.root, split)}'")
        return list(shapes.pop())

    def num_examples(self, split: str) -> int:
        return sum(1 for _ in self._files(split))

    def records(self, split: str) -> Iterator[Record]:
        from PIL import Image, UnidentifiedImageError

        h, w, c = self.image_shape
        for path, label in self._files(split):
            try:
                with Image.open(path) as im:
                    im = im.convert("L" if c == 1 else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.BILINEAR)
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
            except (UnidentifiedImageError, OSError) as e:
                raise DataSourceError(f"corrupt image file '{path}': {e}. Remove or replace it.") from None
            yield Record(buf.getvalue(), label)


class TfrecordSource:
    """Existing tf.Example TFRecords: `<root>/<split>*.tfrecord[.gz]` with `image` (PNG/JPEG) and `label`."""

    modality = "image"

    def __init__(self, root: str, label_names: list[str] | None, image_shape: list[int] | None):
        self.root, self.name = root, os.path.basename(os.path.normpath(root))
        if not os.path.isdir(root):
            raise DataSourceError(f"TFRecord folder '{root}' does not exist (data.root)")
        if not label_names:
            raise DataSourceError("data.label_names is required for data.source 'tfrecord' (e.g. ['cat', 'dog'])")
        self.label_names = list(label_names)
        self._first = None
        self.image_shape = image_shape

    def _paths(self, split: str) -> list[str]:
        paths = sorted(glob.glob(os.path.join(self.root, f"{split}*.tfrecord*")))
        if not paths:
            raise DataSourceError(f"no TFRecord files '{split}*.tfrecord[.gz]' in '{self.root}'")
        return paths

    def _dataset(self, split: str):
        import tensorflow as tf

        paths = self._paths(split)
        comp = "GZIP" if paths[0].endswith(".gz") else ""
        return tf.data.TFRecordDataset(paths, compression_type=comp)

    def num_examples(self, split: str) -> int:
        return sum(1 for _ in self._dataset(split))

    def records(self, split: str) -> Iterator[Record]:
        import tensorflow as tf

        for i, raw in enumerate(self._dataset(split).as_numpy_iterator()):
            ex = tf.train.Example.FromString(raw)
            feats = ex.features.feature
            if "image" not in feats or "label" not in feats:
                raise DataSourceError(
                    f"record {i} of split '{split}' in '{self.root}' lacks 'image' (bytes) or 'label' (int64); "
                    f"it has {sorted(feats.keys())}"
                )
            image = tf.io.decode_image(feats["image"].bytes_list.value[0], expand_animations=False).numpy()
            if self.image_shape is None:
                self.image_shape = list(image.shape)
            label = int(feats["label"].int64_list.value[0])
            if not 0 <= label < len(self.label_names):
                raise DataSourceError(f"record {i} of split '{split}' has label {label}, outside 0..{len(self.label_names) - 1}")
            yield Record(encode_png(image) if image.shape[-1] in (1, 3) else feats["image"].bytes_list.value[0], label)


def open_source(data: dict):
    """Build the source named by a validated `data:` config section."""
    kind = data["source"]
    if kind == "tfds":
        return TfdsSource(data["name"], data["version"], data["data_dir"])
    if kind == "image_folder":
        return ImageFolderSource(data["root"], data["image_shape"], list(data["splits"].values()))
    if kind == "tfrecord":
        return TfrecordSource(data["root"], data["label_names"], data["image_shape"])
    raise DataSourceError(f"unknown data.source '{kind}'. Allowed: tfds, image_folder, tfrecord")
