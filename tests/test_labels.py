import pytest

from emollm.errors import ConfigError
from emollm.labels import LABEL_SETS, find_concepts, get_label_set, normalize_label


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        # case, inflections and synonyms
        ("Joyful", "meld7", "joy"),
        ("happiness", "ravdess8", "happy"),
        ("HAPPILY", "ekman7", "happy"),
        ("mad", "ravdess8", "angry"),
        ("Anger", "ravdess8", "angry"),
        ("scared", "meld7", "fear"),
        ("frightened", "ravdess8", "fearful"),
        ("sadness", "iemocap4", "sad"),
        ("Surprise!", "ravdess8", "surprised"),
        ("disgusted", "meld7", "disgust"),
        ("calmly", "ravdess8", "calm"),
        ("no emotion", "meld7", "neutral"),
        # merges: IEMOCAP-4 folds excited into happy, IEMOCAP-6 keeps it
        ("excited", "iemocap4", "happy"),
        ("excited", "iemocap6", "excited"),
        ("frustration", "iemocap6", "frustrated"),
        ("frustration", "iemocap4", None),
        # IEMOCAP's raw codes belong to its reader, not to free text
        ("I dis agree", "ekman7", None),
        # sentiment folds emotions into polarity, surprise stays unmapped
        ("joy", "sentiment3", "positive"),
        ("furious", "sentiment3", "negative"),
        ("surprised", "sentiment3", None),
        # free text: first label of the set wins, negations are skipped
        ("The speaker sounds angry, maybe a bit sad.", "ravdess8", "angry"),
        ("The speaker isn't happy; she is sad.", "ravdess8", "sad"),
        ("not happy at all", "ravdess8", None),
        ("She isn’t happy, she is sad", "ekman7", "sad"),  # curly apostrophe
        ("not very happy, rather sad", "ekman7", "sad"),  # an intensifier after the negation
        ("no, I am happy", "ekman7", "happy"),  # the negation is too far away
        ("calm, or rather joyful", "meld7", "joy"),  # calm is not a MELD label, so joy is the first
        # no label
        ("Kids are talking by the door", "ravdess8", None),
        ("", "ravdess8", None),
        (None, "ravdess8", None),
        # words that merely contain a label are not labels
        ("madam, saddle the horses", "ravdess8", None),
    ],
)
def test_normalize_label(text, labels, expected):
    assert normalize_label(text, labels) == expected


def test_without_label_set_returns_the_concept():
    assert normalize_label("Joyful") == "happy"
    assert normalize_label("terrified") == "fearful"
    assert find_concepts("happy, then angry, not sad, then scared") == ["happy", "angry", "fearful"]


def test_every_label_of_every_set_normalises_to_itself():
    for label_set in LABEL_SETS.values():
        for label in label_set.labels:
            assert normalize_label(label, label_set) == label
            assert normalize_label(label.upper(), label_set) == label


def test_iemocap4_is_the_usual_four_classes():
    assert get_label_set("iemocap4").labels == ("neutral", "happy", "sad", "angry")
    assert len(get_label_set("meld7")) == 7 and len(get_label_set("ravdess8")) == 8


def test_custom_label_list():
    custom = get_label_set(["Angry", "Calm"])
    assert custom.labels == ("angry", "calm")
    assert normalize_label("furious", custom) == "angry"
    assert normalize_label("happy", custom) is None
    bored = get_label_set(["bored", "happy"])  # a label no synonym names still matches its own word
    assert normalize_label("Bored, I think", bored) == "bored"


def test_unknown_label_set_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="accepted: .*ravdess8"):
        get_label_set("ravdess9")
    with pytest.raises(ConfigError, match="not a label of 'meld7'"):
        get_label_set("meld7").index("happy")
    with pytest.raises(ConfigError, match="non-empty"):
        get_label_set([])
