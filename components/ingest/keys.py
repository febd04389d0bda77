"""Custom property keys of DatasetExampleGen's `examples` output (a module without imports, for the readers).

Written by components/ingest/executor.py, read by pipeline/lineage.py. String properties;
the ones marked JSON hold a JSON document.
"""
DATASET_KEY = "dataset"  # TFDS name, or the folder / file pattern's name
DATASET_VERSION_KEY = "dataset_version"  # TFDS version ('' for folders and TFRecords)
DATA_SOURCE_KEY = "data_source"  # tfds | image_folder | tfrecord
LABEL_NAMES_KEY = "label_names"  # JSON list
MODALITY_KEY = "modality"  # image | text
IMAGE_SHAPE_KEY = "image_shape"  # JSON [H, W, C] ([] for text)
SPLIT_COUNTS_KEY = "split_counts"  # JSON {split: examples}
SPLIT_FINGERPRINTS_KEY = "split_fingerprints"  # JSON {split: sha256 of its file}
