"""A TFDS dataset builder for scikit-learn's handwritten digits (shipped inside sklearn).

1,797 real 8x8 grayscale digits from the UCI optical-digits set, 10 classes. Pixel values
0..16 are scaled to uint8 0..255. Splits are stratified and deterministic (seed 0):
train 70 %, validation 15 %, test 15 %. Importing this module registers the builder:

    import components.ingest.digits_builder  # noqa: F401
    builder = tfds.builder("sklearn_digits", data_dir="runs/tensorflow_datasets")
    builder.download_and_prepare()   # no network: the data is in the sklearn package
"""
import numpy as np
import tensorflow_datasets as tfds

NAME = "sklearn_digits"
SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}
SEED = 0


def stratified_split_indices(labels: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic stratified train/validation/test indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=SPLIT_FRACTIONS["test"], stratify=labels, random_state=seed)
    val_share = SPLIT_FRACTIONS["validation"] / (1 - SPLIT_FRACTIONS["test"])
    train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits as a TFDS dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 70/15/15 splits, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="scikit-learn load_digits(): UCI optical recognition of handwritten digits, 8x8.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=[str(i) for i in range(10)]),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in SPLIT_FRACTIONS}

    def _generate_examples(self, split):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        labels = digits.target.astype(np.int64)
        for i in stratified_split_indices(labels)[split]:
            yield int(i), {"image": images[i], "label": int(labels[i])}
