"""The synthetic_reviews TFDS builder: imdb_reviews' features, deterministic, balanced, and order-dependent."""
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

import components.ingest.reviews_builder as reviews

SPLITS = ("train", "validation", "test")


def prepare(data_dir) -> tuple[tfds.core.DatasetBuilder, dict[str, list[tuple[str, int]]]]:
    builder = tfds.builder("synthetic_reviews", data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder, {s: [(e["text"].decode(), int(e["label"])) for e in tfds.as_numpy(builder.as_dataset(split=s))]
                     for s in SPLITS}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("tfds_reviews"))


def test_splits_and_features_match_imdb_reviews(prepared):
    builder, data = prepared
    info = builder.info
    assert {s: info.splits[s].num_examples for s in SPLITS} == {"train": 2000, "validation": 400, "test": 400}
    assert {s: len(data[s]) for s in SPLITS} == {"train": 2000, "validation": 400, "test": 400}
    features = info.features
    assert set(features.keys()) == {"text", "label"}
    assert isinstance(features["text"], tfds.features.Text)
    assert isinstance(features["label"], tfds.features.ClassLabel) and features["label"].names == ["neg", "pos"]
    assert info.supervised_keys == ("text", "label")
    assert "SYNTHETIC" in info.description


def test_deterministic_across_prepares(prepared, tmp_path):
    _, again = prepare(tmp_path / "second")
    first = prepared[1]
    for s in SPLITS:  # as_dataset order may be shuffled by file layout; compare as sorted lists
        assert sorted(first[s]) == sorted(again[s])
    assert reviews.generate("test") == reviews.generate("test")
    assert set(reviews.generate("train")) != set(reviews.generate("test"))  # distinct seeds per split


def test_balanced_lowercase_lengths_and_imdb_markup(prepared):
    data = prepared[1]
    for s in SPLITS:
        labels = np.array([label for _, label in data[s]])
        assert abs(labels.mean() - 0.5) <= 0.02, s
    texts = [t for t, _ in data["train"]]
    lengths = [len(re.findall(r"[a-z']+", t.replace("<br />", ""))) for t in texts]
    assert min(lengths) >= 8 and max(lengths) <= 40
    assert all(t == t.lower() for t in texts)
    assert 0.05 < np.mean(["<br />" in t for t in texts]) < 0.8
    assert any("!" in t for t in texts) and any("," in t for t in texts)


def test_negations_flip_polarity(prepared):
    data = prepared[1]["train"]
    negation = r"\b(?:not|never|wasn't|hardly|far from)(?: at all)?(?: \w+)? "
    negated_negative = re.compile(negation + "(?:" + "|".join(reviews.NEGATIVE) + r")\b")  # "not bad"
    negated_positive = re.compile(negation + "(?:" + "|".join(reviews.POSITIVE) + r")\b")  # "not good"
    assert np.mean([bool(negated_negative.search(t) or negated_positive.search(t)) for t, _ in data]) > 0.3
    # A single-clause review is decided by its one clause: "not bad" alone must be labelled pos.
    adjective = re.compile(r"\b(?:" + "|".join(reviews.POSITIVE + reviews.NEGATIVE) + r")\b")
    single = [(t, y) for t, y in data if len(adjective.findall(t)) == 1]
    flipped_pos = [y for t, y in single if negated_negative.search(t)]
    flipped_neg = [y for t, y in single if negated_positive.search(t)]
    assert len(flipped_pos) > 20 and all(y == 1 for y in flipped_pos)
    assert len(flipped_neg) > 20 and all(y == 0 for y in flipped_neg)


def test_word_order_matters_bigrams_beat_bag_of_words(prepared):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    data = prepared[1]
    (x_train, y_train), (x_test, y_test) = (list(zip(*data[s])) for s in ("train", "test"))

    def accuracy(ngram_range):
        vectorizer = CountVectorizer(ngram_range=ngram_range, token_pattern=r"[a-z']+")
        model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(x_train), y_train)
        return model.score(vectorizer.transform(x_test), y_test)

    unigram, bigram = accuracy((1, 1)), accuracy((1, 2))
    print(f"synthetic_reviews test accuracy: unigram LR {unigram:.3f}, uni+bigram LR {bigram:.3f}")
    assert 0.55 < unigram < 0.85  # some signal in the words, far from solved without order
    assert bigram > unigram + 0.05
