"""Named emotion label sets and the one label normaliser.

Every label in every set stands for an emotion *concept* (``happy``, ``sad``, ...). Free text is mapped to a
concept through one synonym table (case, inflections and synonyms: "Joyful", "happiness", "mad",
"scared"), then to the label the set uses for that concept. The parser, the rewards and the metrics all
call :func:`normalize_label`, so they agree on what a completion means.

>>> normalize_label("Joyful", "meld7")
'joy'
>>> normalize_label("The speaker sounds MAD.", "ravdess8")
'angry'
>>> normalize_label("excitement", "iemocap4")  # IEMOCAP-4 merges excited into happy
'happy'
>>> normalize_label("a door", "ravdess8") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from emollm.errors import ConfigError

# Concept -> the surface forms that name it (lower case; multi-word forms allowed, up to three words).
# Keep every form unambiguous: a word listed here is read as that emotion wherever it appears.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "neutrally", "emotionless", "unemotional", "no emotion"),
    "calm": ("calm", "calmness", "calmly", "relaxed", "serene", "peaceful", "tranquil", "composed"),
    "happy": (
        "happy",
        "happiness",
        "happily",
        "happier",
        "joy",
        "joyful",
        "joyous",
        "joyfully",
        "glad",
        "cheerful",
        "delighted",
        "pleased",
        "elated",
        "amused",
        "amusement",
    ),
    "sad": (
        "sad",
        "sadness",
        "sadly",
        "sadder",
        "unhappy",
        "unhappiness",
        "sorrow",
        "sorrowful",
        "depressed",
        "grief",
        "grieving",
        "melancholy",
        "melancholic",
        "gloomy",
        "miserable",
    ),
    "angry": (
        "angry",
        "anger",
        "angrily",
        "angrier",
        "angered",
        "mad",
        "furious",
        "fury",
        "rage",
        "enraged",
        "irritated",
        "irritation",
        "annoyed",
        "annoyance",
        "hostile",
    ),
    "fearful": (
        "fear",
        "fearful",
        "fearfully",
        "afraid",
        "scared",
        "frightened",
        "terrified",
        "terror",
        "anxious",
        "anxiety",
        "nervous",
        "worried",
        "panic",
        "panicked",
    ),
    "disgust": (
        "disgust",
        "disgusted",
        "disgusting",
        "revulsion",
        "revolted",
        "repulsed",
        "grossed out",
    ),
    "surprised": (
        "surprise",
        "surprised",
        "surprising",
        "astonished",
        "astonishment",
        "amazed",
        "amazement",
        "shocked",
        "startled",
    ),
    "excited": ("excited", "excitement", "exciting", "thrilled", "enthusiastic", "enthusiasm"),
    "frustrated": ("frustrated", "frustration", "frustrating", "exasperated"),
    "contempt": ("contempt", "contemptuous", "scorn", "scornful", "disdain"),
    "positive": ("positive", "positively"),
    "negative": ("negative", "negatively"),
}

# A match right after one of these words is skipped: "not happy, rather sad" -> sad. An intensifier may
# stand between: "not very happy" is skipped too.
NEGATIONS = frozenset({"not", "no", "never", "hardly", "nor", "without"})
INTENSIFIERS = frozenset({"very", "really", "so", "too", "that", "particularly", "especially", "at", "all"})

_WORD_TO_CONCEPT: dict[str, str] = {}
for _concept, _forms in SYNONYMS.items():
    for _form in _forms:
        if _form in _WORD_TO_CONCEPT:  # pragma: no cover - guards edits to the table above
            raise AssertionError(f"synonym {_form!r} is listed for two concepts")
        _WORD_TO_CONCEPT[_form] = _concept
_MAX_PHRASE = max(len(form.split()) for form in _WORD_TO_CONCEPT)


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of emotion labels.

    Attributes:
        name: Short name, e.g. ``"ravdess8"``.
        labels: The labels in a fixed order (the order of confusion-matrix rows and score vectors).
        merges: Concepts folded into one of the labels, e.g. ``{"excited": "happy"}`` for IEMOCAP-4.
        description: One line saying where the set comes from.
    """

    name: str
    labels: tuple[str, ...]
    merges: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if not self.labels:
            raise ConfigError(f"label set {self.name!r} has no labels")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"label set {self.name!r} repeats a label: {list(self.labels)}")
        for concept, label in self.merges.items():
            if label not in self.labels:
                raise ConfigError(
                    f"label set {self.name!r} merges {concept!r} into {label!r}, which is not one of "
                    f"its labels {list(self.labels)}"
                )
        table: dict[str, str] = {}
        for label in self.labels:
            table[_WORD_TO_CONCEPT.get(label.lower(), label.lower())] = label
        for concept, label in self.merges.items():
            table.setdefault(concept, label)
        object.__setattr__(self, "_concept_to_label", table)
        # labels that name no known concept (a custom "bored") still match their own word
        own = {label.lower(): label.lower() for label in self.labels if label.lower() not in _WORD_TO_CONCEPT}
        object.__setattr__(self, "_own_words", own)

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self.labels

    def index(self, label: str) -> int:
        """Position of ``label`` in :attr:`labels`; raises ConfigError for a label not in the set."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ConfigError(
                f"{label!r} is not a label of {self.name!r}; accepted: {list(self.labels)}"
            ) from None

    def label_for_concept(self, concept: str) -> str | None:
        """The label this set uses for an emotion concept (after merges), or None if it has none."""
        return self._concept_to_label.get(concept)  # type: ignore[attr-defined]

    def normalize(self, text: str | None) -> str | None:
        """The first label of this set named in ``text``, or None. See :func:`normalize_label`."""
        return normalize_label(text, self)


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("’", "'").replace("n't", " not")
    return re.findall(r"[a-z]+", text)


def _negated(words: list[str], i: int) -> bool:
    j = i - 1
    while j >= 0 and words[j] in INTENSIFIERS and j > i - 3:
        j -= 1
    return j >= 0 and words[j] in NEGATIONS


def find_concepts(text: str | None, extra: Mapping[str, str] | None = None) -> list[str]:
    """Every emotion concept named in ``text``, in order of appearance, negated mentions skipped.

    >>> find_concepts("Not happy at all: furious, and a little scared")
    ['angry', 'fearful']
    """
    if not text:
        return []
    table = {**_WORD_TO_CONCEPT, **(extra or {})}
    longest = max([_MAX_PHRASE, *(len(form.split()) for form in (extra or {}))])
    words = _tokens(text)
    found: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            concept = table.get(" ".join(words[i : i + n]))
            if concept is not None:
                if not _negated(words, i):
                    found.append(concept)
                i += n
                break
        else:
            i += 1
    return found


def normalize_label(text: str | None, labels: str | LabelSet | Sequence[str] | None = None) -> str | None:
    """Map free text to a canonical label.

    The text is lower-cased and split into words; the first word or phrase that names an emotion (see
    :data:`SYNONYMS`) and has a label in ``labels`` wins. A mention right after a negation ("not happy") is
    skipped. Text that names no label of the set gives None.

    Args:
        text: A model's answer, a dataset's raw label or any other text.
        labels: A label-set name (``"meld7"``), a :class:`LabelSet`, a list of labels, or None to get the
            emotion concept itself (``"happy"``, ``"sad"``, ...).

    Returns:
        The label as spelled in the set, or None.

    >>> normalize_label("happiness")
    'happy'
    >>> normalize_label("I'd say scared, maybe sad", "meld7")
    'fear'
    >>> normalize_label("calm", "meld7") is None  # MELD has no calm
    True
    """
    if labels is None:
        concepts = find_concepts(text)
        return concepts[0] if concepts else None
    label_set = get_label_set(labels)
    for concept in find_concepts(text, label_set._own_words):  # type: ignore[attr-defined]
        label = label_set.label_for_concept(concept)
        if label is not None:
            return label
    return None


LABEL_SETS: dict[str, LabelSet] = {
    "iemocap4": LabelSet(
        "iemocap4",
        ("neutral", "happy", "sad", "angry"),
        merges={"excited": "happy"},
        description="IEMOCAP 4-class (excited merged into happy), the usual benchmark setting",
    ),
    "iemocap6": LabelSet(
        "iemocap6",
        ("neutral", "happy", "sad", "angry", "excited", "frustrated"),
        description="IEMOCAP 6-class",
    ),
    "meld7": LabelSet(
        "meld7",
        ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
        description="MELD 7-class (Friends dialogues)",
    ),
    "ravdess8": LabelSet(
        "ravdess8",
        ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
        description="RAVDESS speech, 8 classes",
    ),
    "ekman7": LabelSet(
        "ekman7",
        ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
        description="Ekman's six basic emotions plus neutral",
    ),
    "sentiment3": LabelSet(
        "sentiment3",
        ("negative", "neutral", "positive"),
        merges={
            "happy": "positive",
            "excited": "positive",
            "sad": "negative",
            "angry": "negative",
            "fearful": "negative",
            "disgust": "negative",
            "frustrated": "negative",
            "contempt": "negative",
            "calm": "neutral",
        },
        description="Sentiment polarity; surprise is left unmapped (it can be either)",
    ),
}


def get_label_set(labels: str | LabelSet | Iterable[str]) -> LabelSet:
    """Resolve a label-set name, a LabelSet or a list of labels to a :class:`LabelSet`.

    Raises:
        ConfigError: for an unknown name or an empty list.

    >>> get_label_set("iemocap4").labels
    ('neutral', 'happy', 'sad', 'angry')
    >>> get_label_set(["Calm", "Angry"]).labels
    ('calm', 'angry')
    """
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        if labels in LABEL_SETS:
            return LABEL_SETS[labels]
        raise ConfigError(f"unknown label set {labels!r}; accepted: {sorted(LABEL_SETS)} or a list of labels")
    custom = tuple(str(label).strip().lower() for label in labels)
    if not custom or not all(custom):
        raise ConfigError(f"a custom label set needs non-empty labels, got {list(custom)}")
    return LabelSet("custom", custom)


def parse_label_option(value: str | LabelSet | Iterable[str] | None):
    """A ``--labels`` option as the readers take it: None, a set's name, or comma-separated labels -> a list.

    The option is checked here (an unknown name fails at once); a list or :class:`LabelSet` passes through.

    Raises:
        ConfigError: an unknown set name, or an empty label in a list.

    >>> parse_label_option("meld7"), parse_label_option("Calm, angry"), parse_label_option(None)
    ('meld7', ['calm', 'angry'], None)
    """
    if value is None or isinstance(value, LabelSet):
        return value
    if isinstance(value, str):
        if "," not in value:
            get_label_set(value)
            return value
        value = value.split(",")
    return list(get_label_set(list(value)).labels)
