"""Phone symbols and Praat TextGrids: ARPAbet and IPA labels, and reading word/phone tiers.

A TextGrid from the Montreal Forced Aligner, from Praat's speech synthesiser or drawn by hand is *trusted*:
its word and phone intervals become an :class:`~emollm.prosody.align.Alignment` as they are. Phone labels
may be ARPAbet (``AO1``, ``ao``) or IPA (``ɔː``, ``oːɹ``, MFA's ``aj``); every vowel is mapped to one of
the 15 ARPAbet vowels so that the rest of the pipeline speaks one alphabet.

>>> to_arpabet("AO1"), to_arpabet("oːɹ"), to_arpabet("aj"), to_arpabet("k")
(('AO', 1), ('AO', None), ('AY', None), ('K', None))
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from emollm.errors import AlignmentError

ARPABET_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
ARPABET_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T", "TH",
    "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
SILENCES = {"", "sil", "sp", "spn", "<sil>", "</s>", "<s>", "_", "_:", "#", "pau", "{sl}", "{sil}", "<eps>"}

# IPA vowels (length marks and stress removed) -> ARPAbet. Covers eSpeak's en-us output (Praat's synthesiser)
# and the Montreal Forced Aligner's english_mfa / english_us_mfa phone sets (which write diphthongs "aj").
IPA_VOWELS = {
    "ɑ": "AA", "a": "AA", "ɒ": "AA", "ɑɹ": "AA", "aɹ": "AA",
    "æ": "AE",
    "ʌ": "AH", "ə": "AH", "ɐ": "AH", "əl": "AH", "ɜ": "ER",
    "ɔ": "AO", "oɹ": "AO", "ɔɹ": "AO",
    "aʊ": "AW", "aw": "AW",
    "aɪ": "AY", "aj": "AY", "aɪɚ": "AY", "aɪə": "AY",
    "ɛ": "EH", "ɛɹ": "EH", "ɛə": "EH", "e": "EH",
    "ɚ": "ER", "ɝ": "ER", "ɜɹ": "ER", "əɹ": "ER",
    "eɪ": "EY", "ej": "EY",
    "ɪ": "IH", "ɪɹ": "IH", "ᵻ": "IH", "ɨ": "IH",
    "i": "IY", "iə": "IY", "ɪə": "IY",
    "oʊ": "OW", "o": "OW", "ow": "OW", "əʊ": "OW", "ɵ": "OW",
    "ɔɪ": "OY", "ɔj": "OY", "oɪ": "OY",
    "ʊ": "UH", "ʊɹ": "UH", "ʊə": "UH",
    "u": "UW", "ʉ": "UW", "uw": "UW", "ʉw": "UW",
}  # fmt: skip
IPA_CONSONANTS = {
    "b": "B", "tʃ": "CH", "d": "D", "ð": "DH", "f": "F", "ɡ": "G", "g": "G", "h": "HH", "dʒ": "JH",
    "k": "K", "l": "L", "ɫ": "L", "m": "M", "n": "N", "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R", "s": "S",
    "ʃ": "SH", "t": "T", "θ": "TH", "v": "V", "w": "W", "j": "Y", "z": "Z", "ʒ": "ZH", "ɾ": "T", "ʔ": "T",
    "tʰ": "T", "pʰ": "P", "kʰ": "K", "cʰ": "K", "c": "K", "ɟ": "G", "ç": "HH", "ʎ": "L", "ɲ": "N",
    "l̩": "L", "n̩": "N", "m̩": "M", "ɾ̃": "N",
}  # fmt: skip
_ARPABET = re.compile(r"^([A-Za-z]{1,2})([012])?$")
_STRIP = "ˈˌːˑ̯.'\u02d0"


def to_arpabet(label: str) -> tuple[str, int | None] | None:
    """Map one phone label (ARPAbet with or without stress, or IPA) to ``(ARPABET, stress)``.

    Args:
        label: A phone label from a TextGrid or an aligner.

    Returns:
        ``(phone, stress)``, where ``stress`` is 0/1/2 when the label carries it (ARPAbet digits, or an IPA
        ``ˈ``/``ˌ`` mark on a vowel) and None otherwise; ``None`` for silence and labels that are not phones.

    >>> to_arpabet("ɪ"), to_arpabet("ˈeɪ"), to_arpabet("sil")
    (('IH', None), ('EY', 1), None)
    """
    text = unicodedata.normalize("NFC", label.strip())
    if text.lower() in SILENCES:
        return None
    match = _ARPABET.match(text)
    if match and match.group(1).upper() in ARPABET_VOWELS + ARPABET_CONSONANTS:
        phone = match.group(1).upper()
        digit = match.group(2)
        return phone, (int(digit) if digit is not None and phone in ARPABET_VOWELS else None)
    stress = 1 if "ˈ" in text else 2 if "ˌ" in text else None
    ipa = "".join(ch for ch in text if ch not in _STRIP)
    if ipa in IPA_VOWELS:
        return IPA_VOWELS[ipa], stress
    if ipa in IPA_CONSONANTS:
        return IPA_CONSONANTS[ipa], None
    # Longer r-coloured or schwa-offglide vowels ("ɑːɹ", "aɪɚ" are listed; "eɪɚ" is not): drop the tail.
    for tail in ("ɹ", "ɚ", "ə", "l"):
        if ipa.endswith(tail) and ipa[: -len(tail)] in IPA_VOWELS:
            return IPA_VOWELS[ipa[: -len(tail)]], stress
    return None


def is_vowel(phone: str) -> bool:
    """Whether an ARPAbet phone (no stress digit) is a vowel."""
    return phone in ARPABET_VOWELS


# -- reading TextGrids --------------------------------------------------------------------------------------


def read_textgrid(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """Read the interval tiers of a Praat TextGrid (long or short text format, UTF-8 or UTF-16).

    Args:
        path: The ``.TextGrid`` file.

    Returns:
        ``{tier name: [(start, end, label), ...]}`` for every interval tier, in file order.

    Raises:
        AlignmentError: the file is missing or is not a TextGrid Praat can read.
    """
    import parselmouth

    path = Path(path).expanduser()
    if not path.is_file():
        raise AlignmentError(f"TextGrid {str(path)!r} does not exist")
    try:
        grid = parselmouth.read(str(path))
    except parselmouth.PraatError as exc:
        raise AlignmentError(
            f"could not read TextGrid {str(path)!r}: {str(exc).strip().splitlines()[0]}"
        ) from exc
    if not isinstance(grid, parselmouth.TextGrid):
        raise AlignmentError(f"{str(path)!r} is a Praat {type(grid).__name__}, not a TextGrid")
    return textgrid_tiers(grid)


def textgrid_tiers(grid) -> dict[str, list[tuple[float, float, str]]]:
    """The interval tiers of a parselmouth ``TextGrid`` as plain tuples (see :func:`read_textgrid`)."""
    from parselmouth.praat import call

    tiers: dict[str, list[tuple[float, float, str]]] = {}
    for tier in range(1, int(call(grid, "Get number of tiers")) + 1):
        if not call(grid, "Is interval tier", tier):
            continue
        name = call(grid, "Get tier name", tier)
        intervals = []
        for i in range(1, int(call(grid, "Get number of intervals", tier)) + 1):
            intervals.append(
                (
                    float(call(grid, "Get start time of interval", tier, i)),
                    float(call(grid, "Get end time of interval", tier, i)),
                    call(grid, "Get label of interval", tier, i),
                )
            )
        tiers[name if name not in tiers else f"{name}_{tier}"] = intervals
    return tiers


WORD_TIER_NAMES = ("words", "word", "wrd", "orthography")
PHONE_TIER_NAMES = ("phones", "phone", "phonemes", "phoneme", "segments", "phn")


def pick_tiers(
    tiers: dict[str, list[tuple[float, float, str]]],
    word_tier: str | None = None,
    phone_tier: str | None = None,
) -> tuple[list[tuple[float, float, str]] | None, list[tuple[float, float, str]]]:
    """Find the word and phone tiers by name (MFA writes ``words``/``phones``, or ``SPK - words``).

    Returns:
        ``(word intervals or None, phone intervals)``.

    Raises:
        AlignmentError: no phone tier, naming the tiers that were found.
    """

    def find(wanted: str | None, names: tuple[str, ...]) -> str | None:
        if wanted is not None:
            if wanted not in tiers:
                raise AlignmentError(f"TextGrid has no tier {wanted!r}; its interval tiers are {list(tiers)}")
            return wanted
        for key in tiers:
            base = key.lower().split(" - ")[-1].strip()
            if base in names:
                return key
        return None

    phones = find(phone_tier, PHONE_TIER_NAMES)
    if phones is None:
        raise AlignmentError(
            f"TextGrid has no phone tier: expected one named {' / '.join(PHONE_TIER_NAMES)} "
            f"(or pass phone_tier=); its interval tiers are {list(tiers)}"
        )
    words = find(word_tier, WORD_TIER_NAMES)
    return (tiers[words] if words else None), tiers[phones]


def write_textgrid(
    path: str | Path, tiers: dict[str, list[tuple[float, float, str]]], duration: float
) -> None:
    """Write interval tiers as a Praat TextGrid (long text format, UTF-8), atomically.

    Gaps between intervals are filled with empty intervals, as Praat requires, so the file opens in Praat
    and reads back with :func:`read_textgrid`.

    Args:
        path: The ``.TextGrid`` file to write.
        tiers: ``{tier name: [(start, end, label), ...]}``, intervals in time order, not overlapping.
        duration: End time of the grid (the audio's length).

    >>> import tempfile, pathlib
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(folder.name) / "a.TextGrid"
    >>> write_textgrid(path, {"words": [(0.1, 0.5, "door")]}, 1.0)
    >>> read_textgrid(path)["words"]  # the gaps are filled with empty intervals
    [(0.0, 0.1, ''), (0.1, 0.5, 'door'), (0.5, 1.0, '')]
    >>> folder.cleanup()
    """
    from emollm.io import write_text_atomic

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {duration!r}"]
    lines += ["tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for k, (name, intervals) in enumerate(tiers.items(), 1):
        filled: list[tuple[float, float, str]] = []
        cursor = 0.0
        for start, end, label in intervals:
            if start < cursor - 1e-9 or end <= start or end > duration + 1e-9:
                raise AlignmentError(
                    f"tier {name!r}: interval ({start}, {end}, {label!r}) overlaps the previous one, is "
                    f"empty or ends after {duration} s"
                )
            if start > cursor + 1e-9:
                filled.append((cursor, start, ""))
            filled.append((start, end, label))
            cursor = end
        if cursor < duration - 1e-9 or not filled:
            filled.append((cursor, duration, ""))
        lines += [f"    item [{k}]:", '        class = "IntervalTier"', f'        name = "{name}"']
        lines += [
            "        xmin = 0",
            f"        xmax = {duration!r}",
            f"        intervals: size = {len(filled)}",
        ]
        for i, (start, end, label) in enumerate(filled, 1):
            text = label.replace('"', '""')
            lines += [
                f"        intervals [{i}]:",
                f"            xmin = {start!r}",
                f"            xmax = {end!r}",
            ]
            lines += [f'            text = "{text}"']
    write_text_atomic(path, "\n".join(lines) + "\n")
