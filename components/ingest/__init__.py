"""Ingestion: datasets (TFDS, image folders, TFRecords) -> tf.Example TFRecords in TFX split layout."""
