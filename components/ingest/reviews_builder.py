"""A TFDS dataset builder for SYNTHETIC movie reviews: the offline stand-in for `imdb_reviews`.

The text is generated from templates, not written by people. It exists to test the text path
(ingest, tokenization, a sequence model, evaluation, serving) end to end without a network;
accuracy on it says nothing about accuracy on real reviews. Features are exactly those of
imdb_reviews/plain_text ({"text": Text, "label": ClassLabel(["neg", "pos"])}), so a config can
switch between the two by name.

A review is 8-40 lowercase words: 1 or 3 sentiment clauses plus 0-3 neutral filler sentences
("my friend recommended it."), in random order, with some punctuation and IMDB's "<br /><br />".
A clause has a polarity (+1/-1) and is written with a positive or negative adjective, maybe an
intensifier, and maybe a negation that flips it ("not good" is negative, "not bad" and "never
boring" positive, "far from brilliant" negative, "not very dull" positive).
The label is the sign of the sum of clause polarities (an odd count, so never a tie). Because
negation flips the adjective, a bag of words cannot tell "not good ... bad" from "good ... not bad":
word order matters, and a BiLSTM beats a unigram model. Labels are exactly balanced per split;
LABEL_NOISE is 0 (clean labels). Each split has its own fixed seed. Importing registers the builder:

    import components.ingest.reviews_builder  # noqa: F401
    builder = tfds.builder("synthetic_reviews", data_dir="runs/tensorflow_datasets")
    builder.download_and_prepare()   # no network: everything is generated here
"""
import re

import numpy as np
import tensorflow_datasets as tfds

NAME = "synthetic_reviews"
SPLIT_SIZES = {"train": 2000, "validation": 400, "test": 400}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}  # distinct: no split replays another's stream
LABEL_NAMES = ["neg", "pos"]
NEGATION_RATE = 0.35  # < 0.5, so adjectives still carry some signal (as in real reviews)
LABEL_NOISE = 0.0  # fraction of labels flipped; kept at 0 so the task is learnable exactly
MIN_WORDS, MAX_WORDS = 8, 40

SUBJECTS = ["the movie", "this film", "the acting", "the plot", "the soundtrack", "the ending", "the script",
            "the cast", "the dialogue", "the direction", "the story", "the cinematography"]
POSITIVE = ["good", "great", "wonderful", "brilliant", "moving", "excellent", "enjoyable", "superb", "charming",
            "funny", "beautiful", "clever"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "weak", "poor", "tedious", "mediocre", "predictable",
            "clumsy", "pointless"]
INTENSIFIERS = ["very", "really", "truly", "quite", "so", "extremely", "pretty"]
FILLERS = ["i watched it on sunday.", "my friend recommended it.", "i saw it with my sister.",
           "it was on tv last night.", "the theater was half empty.", "i had popcorn.",
           "it runs about two hours.", "i went in knowing nothing about it.", "we rented it on a rainy evening.",
           "it came out a few years ago.", "i watched the whole thing in one sitting.", "there is a sequel."]
# {s} subject, {a} adjective phrase (maybe with intensifier). Negated forms put the negation in
# different places, so a single bigram is not always enough either.
PLAIN = ["{s} was {a}", "{s} is {a}", "i found {s} {a}", "honestly, {s} was {a}", "{s} felt {a}"]
NEGATED = ["{s} was not {a}", "{s} is not {a}", "{s} was never {a}", "{s} wasn't {a}", "i did not find {s} {a}",
           "{s} was far from {a}", "{s} is hardly {a}", "{s} was not at all {a}"]
SENTENCE_ENDS = [".", ".", ".", "!", "..."]


def _clause(rng: np.random.RandomState, polarity: int) -> str:
    negate = rng.rand() < NEGATION_RATE
    # A negated clause is written with the opposite adjective: "not bad" has polarity +1.
    adjective_positive = (polarity > 0) != negate
    adjective = rng.choice(POSITIVE if adjective_positive else NEGATIVE)
    template = rng.choice(NEGATED if negate else PLAIN)
    if rng.rand() < 0.3 and not any(w in template for w in ("at all", "far from", "hardly")):  # keep it English
        adjective = f"{rng.choice(INTENSIFIERS)} {adjective}"
    return template.format(s=rng.choice(SUBJECTS), a=adjective)


def _clause_polarities(rng: np.random.RandomState, label: int) -> list[int]:
    """1 or 3 polarities (+1/-1) whose sum has the sign of `label` (odd count: no ties)."""
    sign = 1 if label == 1 else -1
    if rng.rand() < 0.5:
        return [sign]
    while True:  # 3 clauses, uniformly among the 4 patterns with this majority
        polarities = [int(p) for p in rng.choice([-1, 1], size=3)]
        if np.sign(sum(polarities)) == sign:
            return polarities


def _review(rng: np.random.RandomState, label: int) -> str:
    while True:  # resample until the word count fits (rarely needed)
        clauses = [_clause(rng, p) for p in _clause_polarities(rng, label)]
        # Join two clauses into one sentence now and then ("..., but ..."): order inside a sentence varies too.
        sentences = []
        while clauses:
            if len(clauses) >= 2 and rng.rand() < 0.3:
                sentences.append(f"{clauses.pop(0)}, but {clauses.pop(0)}{rng.choice(SENTENCE_ENDS)}")
            else:
                sentences.append(f"{clauses.pop(0)}{rng.choice(SENTENCE_ENDS)}")
        sentences += list(rng.choice(FILLERS, size=rng.randint(0, 4), replace=False))
        sentences = [sentences[i] for i in rng.permutation(len(sentences))]
        text = sentences[0]
        for sentence in sentences[1:]:
            text += (" <br /><br />" if rng.rand() < 0.15 else "") + " " + sentence
        if MIN_WORDS <= len(re.findall(r"[a-z']+", text.replace("<br />", ""))) <= MAX_WORDS:
            return text


def generate(split: str) -> list[tuple[str, int]]:
    """The (text, label) pairs of a split, in order. Deterministic: the same on every call and machine."""
    # RandomState, not default_rng: its streams are frozen across numpy versions.
    rng = np.random.RandomState(SPLIT_SEEDS[split])
    n = SPLIT_SIZES[split]
    labels = rng.permutation(np.arange(n) % 2)  # exactly balanced
    examples = []
    for label in labels:
        text = _review(rng, int(label))
        if LABEL_NOISE and rng.rand() < LABEL_NOISE:
            label = 1 - label
        examples.append((text, int(label)))
    return examples


class SyntheticReviews(tfds.core.GeneratorBasedBuilder):
    """Templated movie reviews with negation; imdb_reviews' features, for offline tests."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Templated reviews, 1 or 3 sentiment clauses with negation; 2000/400/400."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "SYNTHETIC templated movie reviews (not real text), with imdb_reviews' plain_text features. "
                "Useful for testing the text path end to end offline; accuracy on it says nothing about "
                "real reviews. Label = sign of the summed polarity of 1 or 3 sentiment clauses, where "
                "negations flip polarity ('not bad' is positive), so word order matters."
            ),
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=LABEL_NAMES)}
            ),
            supervised_keys=("text", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split):
        for i, (text, label) in enumerate(generate(split)):
            yield i, {"text": text, "label": label}
