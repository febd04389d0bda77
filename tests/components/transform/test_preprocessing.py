"""The text Transform (components/transform/preprocessing.py): tokenizing, padding, and the
vocabulary preprocessing_fn builds under tf.Transform on Beam. The text pipeline end to end
is tests/pipeline/test_text.py."""
import tensorflow as tf

from components.transform.preprocessing import OOV_ID, PAD_ID, pad_ids, preprocessing_fn, tokenize


def test_tokenize_lowercases_drops_markup_and_punctuation():
    tokens = tokenize(tf.constant(["The Movie was NOT bad!<br /><br />Really, it's fine.", "Ünïcode café"]))
    assert tokens.to_list() == [
        [b"the", b"movie", b"was", b"not", b"bad", b"really", b"it's", b"fine"],
        ["ünïcode".encode(), "café".encode()],
    ]


def test_pad_ids_reserves_padding_and_oov_and_truncates():
    ids = tf.ragged.constant([[0, 5, -1], [1, 2, 3, 4, 5, 6]], dtype=tf.int64)  # -1: not in the vocabulary
    padded = pad_ids(ids, 4).numpy()
    assert padded.tolist() == [[2, 7, OOV_ID, PAD_ID], [3, 4, 5, 6]]


def test_transform_vocabulary_orders_by_frequency_and_maps_unknown_words(tmp_path):
    """preprocessing_fn analyzed with tf.Transform on Beam, as TFX Transform runs it."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    spec = {"text": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    train = [{"text": b"good good good movie", "label": 1}, {"text": b"bad movie", "label": 0}]
    config = {"modality": "text", "max_tokens": 3, "sequence_length": 5}
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as p, tft_beam.Context(temp_dir=str(tmp_path)):
        transform_fn = (p | beam.Create(train), metadata) | tft_beam.AnalyzeDataset(lambda x: preprocessing_fn(x, config))
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "tg"))
    output = tft.TFTransformOutput(str(tmp_path / "tg"))
    assert output.vocabulary_size_by_name("tokens") == 3
    out = output.transform_raw_features({"text": tf.constant(["Good movie, unseen words", "bad"]), "label": tf.constant([1, 0], tf.int64)})
    # good (3x) -> 2, movie (2x) -> 3, bad -> 4; unknown -> 1; padding 0
    assert out["tokens"].numpy().tolist() == [[2, 3, OOV_ID, OOV_ID, PAD_ID], [4, 0, 0, 0, 0]]
