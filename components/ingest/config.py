"""The `data:` config section (with its nested `text:`): its one schema (keys, types, defaults,
allowed values, checks).

pipeline/config.py generates its `data` SCHEMA entries from `DataConfig` and runs its checks,
so a default or a rule is written once. Import-free apart from the standard library.

    DataConfig.from_dict({"source": "tfds"}).splits      # {"train": "train", "eval": "validation", "test": "test"}
    DataConfig.from_dict({"source": "image_folder"})     # SectionError: missing data key 'root': ... needs the folder to read
"""
from __future__ import annotations

import dataclasses

from components.config_section import NUMBER, ConfigSection, field

SOURCES = ("tfds", "image_folder", "tfrecord")
OUTPUT_SPLITS = ("train", "eval", "test")  # the splits ExampleGen writes, each mapped to a source split


@dataclasses.dataclass(frozen=True)
class TextConfig(ConfigSection):
    """`data.text`: text datasets only, the tokenizing Transform."""

    SECTION = "text"

    max_tokens: int = field(20000, (int,))  # vocabulary: the most frequent training tokens
    sequence_length: int = field(200, (int,))  # tokens per example (padded / truncated)

    def check(self) -> None:
        for key in ("max_tokens", "sequence_length"):
            if getattr(self, key) < 1:
                raise self.fail(key, getattr(self, key), "expected an integer >= 1")


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigSection):
    """`data:`: where examples come from and how they are split."""

    SECTION = "data"

    source: str = field("tfds", (str,), SOURCES)
    name: str = field("sklearn_digits", (str,))  # TFDS name
    version: str | None = field(None, (str, type(None)))
    data_dir: str | None = field(None, (str, type(None)))  # default: <runs_dir>/tensorflow_datasets
    root: str | None = field(None, (str, type(None)))  # image_folder root / tfrecord file pattern root
    splits: dict = field({"train": "train", "eval": "validation", "test": "test"}, (dict,))
    image_shape: list | None = field(None, (list, type(None)))  # [H, W, C]; required to resize image folders
    label_names: list | None = field(None, (list, type(None)))  # tfrecord sources without names
    train_fraction: float = field(1.0, NUMBER)  # low-data experiments; stratified, seeded
    seed: int = field(0, (int,))
    text: TextConfig = field(TextConfig, None)

    def check(self) -> None:
        if set(self.splits) != set(OUTPUT_SPLITS):
            raise self.fail("splits", self.splits, "map exactly the output splits train, eval and test to source split names")
        for key, value in self.splits.items():
            if not isinstance(value, str) or not value:
                raise self.fail(f"splits.{key}", value, "expected a source split name (a string), e.g. train, validation or 'train[:80%]'")
        for i, name in enumerate(self.label_names or []):
            if not isinstance(name, str) or not name:
                raise self.fail(f"label_names[{i}]", name, "expected a class name (a non-empty string)")
        if self.source in ("image_folder", "tfrecord") and not self.root:
            raise self.fail("root", self.root, f"data.source '{self.source}' needs the folder to read", missing=True)
        shape = self.image_shape
        if shape is not None and (len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape) or shape[2] not in (1, 3)):
            raise self.fail("image_shape", shape, "expected [height, width, channels] with channels 1 or 3")
        if not 0 < self.train_fraction <= 1:
            raise self.fail("train_fraction", self.train_fraction, "expected a number in (0, 1]")
