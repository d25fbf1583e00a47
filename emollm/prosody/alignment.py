"""The result of alignment: word and phone intervals of one utterance (:class:`Alignment`).

Shared by the three ways of finding vowels (:func:`emollm.prosody.align.align`: pocketsphinx, a TextGrid, or
syllable nuclei from :mod:`emollm.prosody.nuclei`) and by everything that reads their output (measures,
descriptions, plots), so it lives in a module of its own that imports none of them.

>>> alignment = Alignment(
...     method="textgrid",
...     duration=1.0,
...     words=[Word("ah", 0.2, 0.8)],
...     phones=[Phone("AA", 0.2, 0.8, stress=1, word="ah", word_index=0)],
... )
>>> [(v.phone, v.stress, round(v.duration, 2)) for v in alignment.vowels]
[('AA', 1, 0.6)]
>>> Alignment.from_dict(alignment.to_dict()) == alignment
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from emollm.prosody.textgrid import is_vowel

METHODS = ("pocketsphinx", "textgrid", "nuclei")
NUCLEUS = "NUC"  # the phone label of a syllable nucleus found without a transcript


@dataclass
class Phone:
    """One phone interval.

    Attributes:
        phone: ARPAbet symbol without stress digit (``"AO"``), or ``"NUC"`` for a syllable nucleus.
        start: Start time in seconds.
        end: End time in seconds.
        stress: Lexical stress of a vowel (0 unstressed, 1 primary, 2 secondary); None for consonants and
            when unknown.
        word: The word the phone belongs to, as written in the transcript (None for nuclei).
        word_index: Index of that word in ``Alignment.words``.
        label: The label as the aligner or TextGrid wrote it.
        fit: pocketsphinx only: how well the phone's frames fit it, as its acoustic score per 10 ms frame
            minus that of a free phone loop over the same frames (pocketsphinx's log units; 0 or above: no
            phone sequence fits better; a wrong word's phones reach -100 and below). None for TextGrid
            phones and nuclei. :func:`emollm.prosody.align.check_alignment` reads it.
    """

    phone: str
    start: float
    end: float
    stress: int | None = None
    word: str | None = None
    word_index: int | None = None
    label: str = ""
    fit: float | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    @property
    def is_vowel(self) -> bool:
        """True for the 15 ARPAbet vowels and for syllable nuclei."""
        return is_vowel(self.phone) or self.phone == NUCLEUS


@dataclass
class Word:
    """One word interval.

    Attributes:
        text: The word as written in the transcript (lower-cased, punctuation removed).
        start: Start time in seconds.
        end: End time in seconds.
        pronunciation: Where its phones came from: ``"cmudict"``, ``"letter-to-sound"`` or ``"textgrid"``.
    """

    text: str
    start: float
    end: float
    pronunciation: str = "cmudict"


@dataclass
class Alignment:
    """Word and phone intervals of one utterance.

    Attributes:
        method: ``"pocketsphinx"``, ``"textgrid"`` or ``"nuclei"`` (no transcript: vowels are syllable
            nuclei labelled ``"NUC"``, without words).
        duration: Length of the audio in seconds.
        words: Word intervals, in time order (silences excluded).
        phones: Phone intervals, in time order (silences excluded).
        transcript: The transcript that was aligned, if any.
        oov_words: Words missing from the dictionary that were pronounced by letter-to-sound rules.
        skipped_words: Words that could not be pronounced at all (no letters) and were left out.
        notes: Human-readable notes on fallbacks and degradations.
    """

    method: str
    duration: float
    words: list[Word] = field(default_factory=list)
    phones: list[Phone] = field(default_factory=list)
    transcript: str | None = None
    oov_words: list[str] = field(default_factory=list)
    skipped_words: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def vowels(self) -> list[Phone]:
        """The vowel phones (or syllable nuclei), in time order."""
        return [p for p in self.phones if p.is_vowel]

    def to_textgrid(self, path: str | Path) -> None:
        """Write ``words`` and ``phones`` tiers (ARPAbet with stress digits) as a Praat TextGrid.

        Open it in Praat beside the audio to check the alignment, or pass it back as ``textgrid=``.
        """
        from emollm.prosody.textgrid import write_textgrid

        phones = [
            (p.start, p.end, p.phone + (str(p.stress) if p.stress is not None else "")) for p in self.phones
        ]
        words = [(w.start, w.end, w.text) for w in self.words]
        write_textgrid(path, {"words": words, "phones": phones}, self.duration)

    def to_dict(self) -> dict:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Alignment:
        """Rebuild an alignment from :meth:`to_dict` output."""
        data = dict(data)
        data["words"] = [Word(**w) for w in data.get("words", [])]
        data["phones"] = [Phone(**p) for p in data.get("phones", [])]
        return cls(**data)
