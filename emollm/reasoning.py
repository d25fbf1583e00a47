"""Cue claims in free-text rationales, checked against the measured prosody (evidence targets, rewards).

A rationale such as "the pitch is high and 'door' is drawn out" makes *claims* about the voice. This module
finds them with small literal tables (:data:`CUE_PHRASES`, :data:`SUBJECTS`, and the ``"measures"`` style's
own :data:`~emollm.prosody.describe.MEASURE_NAMES` and :data:`~emollm.prosody.describe.MEASURE_LEVELS`) and
judges each with the level rules of :mod:`emollm.prosody.describe`, so every sentence a description writes
verifies as true. ``docs/reasoning.md`` has the full rules.

- A :class:`Claim` names a quantity (a measure id: ``"f0_mean_st"``, ``"articulation_rate"``,
  ``"log_duration"``, ``"contour"``, ``"pause_count"`` ...), a level (``"low"`` / ``"mid"`` / ``"high"``; a
  pause count is its number, ``"0"``), an optional degree (``"slightly"``, ``"very"``) and, for a vowel, the
  quoted word, its ARPAbet vowel or its position (``Vowel 3``).
- Verdicts: ``"true"`` when the measure agrees (the normaliser's bin *or* the 7-step z scale of the
  ``"measures"`` style); ``"false"`` when it lies more than a tolerance (:data:`TOLERANCE_Z` SD,
  :data:`TOLERANCE_RAW` raw units) outside the claimed band; ``"unverifiable"`` in between, and for hedged
  claims, negations that are not decisive, vowels not in the utterance and measures without a reference.
- :class:`RationaleCheck`: ``precision`` = true / (true + false); ``coverage`` = share of the salient cues
  (:func:`salient_cues`) that a true, plain (not negated, not hedged, not "mid") claim names.

>>> [str(claim) for claim in extract_claims("Maybe the pitch is high, but 'door' /AO/ is not long.")]
['maybe f0_mean_st high', "not log_duration high 'door' /AO/"]
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

from emollm.errors import ConfigError
from emollm.prosody.describe import (
    ABSOLUTE_CUTS,
    CONTOUR_MIN_ST,
    LEVEL_CUTS,
    MEASURE_LEVELS,
    MEASURE_NAMES,
    SALIENCE_QUANTITIES,
    SALIENT_Z,
    measure_level,
)
from emollm.prosody.normalize import UTTERANCE_QUANTITIES, NormalizedProsody, utterance_relative

TRUE, FALSE, UNVERIFIABLE = "true", "false", "unverifiable"
# A claim whose z-score lies at most this far outside the claimed band is unverifiable, not false.
TOLERANCE_Z = 0.25
# The same for levels cut on raw values: syllables/s, semitones SD, semitones of pitch change in a vowel.
TOLERANCE_RAW = {"articulation_rate": 0.25, "f0_std_st": 0.25, "contour": 0.25}
ARPABET_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")

# fmt: off
# What each concept measures, for the whole utterance and for one vowel. "rate" is the articulation rate,
# as in the descriptions' "Speech rate is fast" (the "measures" style's "speech rate: high" is speech_rate).
UTTERANCE_MEASURES = {
    "rate": "articulation_rate", "pauses": "pause_ratio", "pitch": "f0_mean_st", "variation": "f0_std_st",
    "range": "f0_range_st", "loudness": "intensity_mean_db", "dynamics": "intensity_range_db",
    "jitter": "jitter_local", "shimmer": "shimmer_local", "hnr": "hnr_db",
}
VOWEL_MEASURES = {"duration": "log_duration", "pitch": "f0_mean_st", "loudness": "intensity_rel_db",
                  "contour": "contour"}
_ANY = "pitch rate pauses variation range loudness dynamics jitter shimmer hnr duration"
# (phrases, level, concepts). The first concept is the phrase's own ("loud" is loudness) unless the list
# starts with "?": such a phrase needs a subject ("high pitch", "the rate is high"). A subject picks the
# first listed concept it can mean; "contour:mid" gives a concept its own level.
CUE_PHRASES = (
    ("fast|faster|quick|quicker|quickly|rapid|rapidly|hurried|rushed|brisk|fast-paced", "high", "rate"),
    ("slow|slower|slowly|sluggish|unhurried|leisurely|slow-paced", "low", "rate"),
    ("loud|louder|loudly|shouting|shouted|yelling|booming|raised voice", "high", "loudness"),
    ("quiet|quieter|quietly|soft|softer|softly|hushed|whispering|whispered|faint", "low", "loudness"),
    ("moderately loud|medium loudness|normal volume", "mid", "loudness"),
    ("high-pitched|higher-pitched|shrill|squeaky", "high", "pitch"),
    ("low-pitched|lower-pitched", "low", "pitch"),
    ("mid-pitched|medium-pitched", "mid", "pitch"),
    ("animated|lively|varied|expressive|sing-song|melodic", "high", "variation"),
    ("monotone|monotonous|no variation|no pitch variation|without variation", "low", "variation"),
    ("flat", "low", "variation contour:mid"),
    ("long|longer|lengthened|drawn-out|drawn out|stretched|elongated|prolonged", "high", "duration pauses"),
    ("short|shorter|clipped|brief|shortened|truncated", "low", "duration pauses"),
    ("medium-length|medium length|average length", "mid", "duration"),
    ("rising|rises|rise|rising in pitch|upward|goes up|rising pitch", "high", "contour"),
    ("falling|falls|fall|falling in pitch|dropping|drops|downward|goes down|falling pitch", "low", "contour"),
    ("level|steady|level in pitch", "mid", "contour"),
    ("breathy|hoarse|raspy", "low", "hnr"),
    ("hesitant|halting", "high", "pauses"),
    ("high|higher|raised|elevated|heightened|increased", "high", "? " + _ANY),
    ("low|lower|lowered|reduced|decreased", "low", "? " + _ANY),
    ("strong|intense|forceful|powerful", "high", "? loudness"),
    ("weak|feeble", "low", "? loudness"),
    ("deep|deeper", "low", "? pitch"),
    ("wide|wider|broad|large|big", "high", "? variation range dynamics"),
    ("narrow|narrower|limited|restricted|small|little", "low", "? variation range dynamics"),
    ("many|frequent|numerous|lots of|a lot of|several", "high", "? pauses"),
    ("few|rare|infrequent", "low", "? pauses"),
    ("medium|moderate|average|normal|typical|usual|mid|regular", "mid", "? " + _ANY),
)
# (phrases, concepts): what a cue phrase next to them is about.
SUBJECTS = (
    ("speech rate|speaking rate|articulation rate|rate|tempo|pace|speed|speech|speaking|delivery", "rate"),
    ("pause|pauses|pausing|hesitation|hesitations|silence|silences", "pauses"),
    ("pitch|mean pitch|average pitch|overall pitch|pitch level|f0|fundamental frequency|tone", "pitch"),
    ("voice", "pitch loudness hnr"),
    ("variation|pitch variation|pitch variability|variability|intonation|melody|inflection", "variation"),
    ("range|pitch range|f0 range", "range"),
    ("loudness|volume|intensity|energy|loudness level", "loudness"),
    ("dynamics|loudness dynamics|loudness variation|volume variation|dynamic range", "dynamics"),
    ("jitter", "jitter"),
    ("shimmer", "shimmer"),
    ("harmonicity|hnr|harmonics-to-noise ratio|harmonics-to-noise", "hnr"),
    ("duration|length|vowel duration", "duration"),
    ("contour|pitch contour", "contour"),
)
DEGREES = {"very": "very|extremely|highly|really|unusually|exceptionally|remarkably|markedly",
           "slightly": "slightly|somewhat|mildly|moderately|marginally|a bit|a little|a touch"}
NEGATORS = {"not", "no", "never", "without", "neither", "nor", "hardly", "barely"}  # and every "...n't"
HEDGES = ("maybe|might|perhaps|possibly|probably|seems|seem|seemed|seemingly|may|could|likely|apparently|"
          "appears|appear|presumably|sort of|kind of")
NEGATION_WINDOW, HEDGE_WINDOW = 3, 8  # tokens looked back from a cue phrase
STOPS = {",", "(", ")", ":", "but", "and", "or", "yet", "while", "although", "though", "whereas", "however"}
# Words allowed between a cue and the vowel after it ("falling pitch on the word 'door'").
FORWARD_GAP = {"on", "in", "of", "for", "at", "the", "a", "an", "word", "vowel", "syllable", "pitch"}
FOLLOW_GAP = {"overall", "vocal", "speaking", "average", "mean", "general"}  # "high overall pitch"
NUMBERS = {"zero": 0, "one": 1, "a single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "no": 0, "without": 0, "without any": 0}
# fmt: on


@dataclass(frozen=True)
class Claim:
    """One cue a rationale asserts.

    Attributes:
        quantity: A measure id: one of :data:`~emollm.prosody.normalize.UTTERANCE_QUANTITIES` or
            ``"pause_count"`` for the utterance; ``"log_duration"``, ``"f0_mean_st"``, ``"intensity_rel_db"``
            or ``"contour"`` for a vowel.
        level: ``"low"``, ``"mid"`` or ``"high"``; for ``"pause_count"`` the count (``"0"``, ``"2"``).
        degree: ``""``, ``"slightly"`` or ``"very"`` (the 7-step scale of the ``"measures"`` style).
        word: The quoted word the vowel belongs to (lower case), if named.
        vowel: Its ARPAbet vowel (``"AO"``), if named.
        position: Its 1-based position (``"Vowel 3"``), if named.
        negated: A negation ("not", "n't", "never", "no" ...) stands before the cue.
        hedged: A hedge ("maybe", "might", "seems" ...) stands before the cue.
        text: The clause the claim was read from.
    """

    quantity: str
    level: str
    degree: str = ""
    word: str | None = None
    vowel: str | None = None
    position: int | None = None
    negated: bool = False
    hedged: bool = False
    text: str = ""

    @property
    def scope(self) -> str:
        """``"vowel"`` when the claim names a word, vowel or position, else ``"utterance"``."""
        return "vowel" if self.word or self.vowel or self.position else "utterance"

    @property
    def key(self) -> tuple:
        """What the claim says, without its text: a repeated claim counts once."""
        return tuple(getattr(self, name) for name in self.__dataclass_fields__ if name != "text")

    def __str__(self) -> str:
        marks = ["maybe" * self.hedged, "not" * self.negated, self.quantity, self.degree, self.level]
        where = [f"'{self.word}'" * bool(self.word), f"/{self.vowel}/" * bool(self.vowel)]
        return " ".join(filter(None, [*marks, *where, f"#{self.position}" * bool(self.position)]))


@dataclass(frozen=True)
class ClaimVerdict:
    """A claim and what the measures say about it.

    Attributes:
        claim: The claim.
        verdict: ``"true"``, ``"false"`` or ``"unverifiable"``.
        reason: ``"agrees"``, ``"disagrees"``, ``"borderline"``, ``"hedged"``, ``"negation not decisive"``,
            ``"no such vowel"``, ``"no reference"`` or ``"unmeasured"``.
        measured: The measured level in words (``"slightly high"``, ``"falling"``, ``"2 pauses"``), if any.
        z: The z-score judged (NaN when judged on a raw value or not at all).
        value: The raw value (syllables/s, semitones, a count, a vowel's pitch change), NaN if none.
        cue: The measurement behind the verdict: a quantity, or ``"<quantity>@<vowel index>"``.
    """

    claim: Claim
    verdict: str
    reason: str
    measured: str | None = None
    z: float = math.nan
    value: float = math.nan
    cue: str | None = None


@dataclass(frozen=True)
class RationaleCheck:
    """The claims of one rationale, judged: what a cue reward reads.

    Attributes:
        verdicts: One per distinct claim, in text order.
        salient: The salient cues of the utterance (:func:`salient_cues`).
        covered: The salient cues a true, plain (not negated, not hedged, not ``"mid"``) claim names.
    """

    verdicts: tuple[ClaimVerdict, ...]
    salient: tuple[str, ...]
    covered: tuple[str, ...]

    def _with(self, verdict: str) -> tuple[ClaimVerdict, ...]:
        return tuple(v for v in self.verdicts if v.verdict == verdict)

    claims = property(lambda self: tuple(v.claim for v in self.verdicts), doc="The distinct claims.")
    true = property(lambda self: self._with(TRUE), doc="Verdicts that are true.")
    false = property(lambda self: self._with(FALSE), doc="Verdicts that are false.")
    unverifiable = property(lambda self: self._with(UNVERIFIABLE), doc="Verdicts that are unverifiable.")
    n_true = property(lambda self: len(self.true), doc="Number of true claims.")
    n_false = property(lambda self: len(self.false), doc="Number of false claims.")
    n_unverifiable = property(lambda self: len(self.unverifiable), doc="Number of unverifiable claims.")
    n_verifiable = property(lambda self: self.n_true + self.n_false, doc="True plus false claims.")

    @property
    def precision(self) -> float | None:
        """True claims over verifiable ones; None without a verifiable claim."""
        return self.n_true / self.n_verifiable if self.n_verifiable else None

    @property
    def coverage(self) -> float | None:
        """Covered salient cues over salient cues; None when nothing is salient."""
        return len(self.covered) / len(self.salient) if self.salient else None

    def reward(self, min_verifiable: int = 1) -> float:
        """The cue reward: :attr:`precision`, or 0.0 with fewer than ``min_verifiable`` verifiable claims.

        >>> RationaleCheck((), (), ()).reward()
        0.0
        """
        return self.precision if self.n_verifiable >= max(min_verifiable, 1) else 0.0

    def to_dict(self) -> dict:
        """A JSON-ready summary: counts, precision, coverage and every verdict (NaN written as None).

        >>> RationaleCheck((), ("f0_mean_st",), ()).to_dict()["coverage"]
        0.0
        """
        nan = {"z": None, "value": None}
        rows = [
            {**asdict(v), **{k: n for k, n in nan.items() if not math.isfinite(getattr(v, k))}}
            for v in self.verdicts
        ]
        counts = {f"n_{k}": getattr(self, f"n_{k}") for k in (TRUE, FALSE, UNVERIFIABLE)}
        summary = {"precision": self.precision, "coverage": self.coverage, "salient": list(self.salient)}
        return {**counts, **summary, "covered": list(self.covered), "verdicts": rows}


# -- extraction ----------------------------------------------------------------------------------------------


def _entries(phrases: str, entry: tuple) -> dict[tuple[str, ...], tuple]:
    return {tuple(p.split()): entry for p in phrases.split("|")}


def _cue(level: str, concepts: str) -> tuple:
    """``("cue", level, own, ((concept, level), ...))`` from a row of :data:`CUE_PHRASES`."""
    names = concepts.split()
    pairs = tuple(tuple(n.split(":")) if ":" in n else (n, level) for n in names if n != "?")
    return ("cue", level, names[0] != "?", pairs)


_LEXICON: dict[tuple[str, ...], tuple] = {
    **_entries(HEDGES, ("hedge",)),
    **{k: v for d, ps in DEGREES.items() for k, v in _entries(ps, ("degree", d)).items()},
    **{k: v for ps, cs in SUBJECTS for k, v in _entries(ps, ("subject", tuple(cs.split()))).items()},
    **{k: v for ps, level, cs in CUE_PHRASES for k, v in _entries(ps, _cue(level, cs)).items()},
}
_LONGEST = max(len(p) for p in _LEXICON)
_TOKEN = re.compile(
    r"(?P<quote>['\"‘“](?P<qword>[^\s'\"‘’“”][^\"“”]{0,29}?)['\"’”](?![a-z0-9]))"
    r"|(?P<phone>/[a-z]{2}[0-2]?/)|(?P<tok>[a-z][a-z0-9]*(?:[-'’][a-z0-9]+)*|\d+(?:\.\d+)?)|(?P<punct>[,:()])",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"[!?;\n]|\.(?!\d)|(?<!\d)\.")  # sentence ends and ";", not the point in "5.8"
_NAMES, _LEVELS = (
    "|".join(sorted(ws, key=len, reverse=True)) for ws in (MEASURE_NAMES.values(), MEASURE_LEVELS)
)
_COLON = re.compile(rf"\b({_NAMES})\s*:\s*({_LEVELS})\b", re.IGNORECASE)  # "mean pitch: slightly low"
_MEASURE_OF_NAME = {name: quantity for quantity, name in MEASURE_NAMES.items()}


def extract_claims(text: str) -> list[Claim]:
    """Find the cue claims of a rationale, in text order (rules: the module docstring, ``docs/reasoning.md``).

    Args:
        text: Free text: a ``<think>`` rationale, a copied prosody description, a whole completion.

    Returns:
        One :class:`Claim` per cue phrase that could be tied to a quantity; repeated claims are kept.

    >>> [(c.quantity, c.level, c.word) for c in extract_claims("Falling pitch on 'door'; many pauses.")]
    [('contour', 'low', 'door'), ('pause_ratio', 'high', None)]
    >>> [(c.quantity, c.degree, c.level) for c in extract_claims("mean pitch: slightly low; jitter: typical")]
    [('f0_mean_st', 'slightly', 'low'), ('jitter_local', '', 'mid')]
    """
    return [claim for clause in _CLAUSE.split(text) if clause.strip() for claim in _clause(clause.strip())]


def _clause(clause: str) -> list[Claim]:
    found = []  # (position in the clause, claim)
    for m in _COLON.finditer(clause):
        degree, _, level = m.group(2).lower().rpartition(" ")
        quantity = _MEASURE_OF_NAME[m.group(1).lower()]
        found.append(
            (m.start(), Claim(quantity, "mid" if level == "typical" else level, degree, text=clause))
        )
    rest = _COLON.sub(lambda m: " " * len(m.group()), clause)
    tokens = [(m.start(), m.lastgroup, m.group("qword") or m.group().lower()) for m in _TOKEN.finditer(rest)]
    items, targets = _scan(tokens)
    for n, (i, _, kind, value) in enumerate(items):
        claim = Claim("pause_count", str(value), text=clause) if kind == "count" else None
        claim = _bind(tokens, items, targets, n, clause) if kind == "cue" else claim
        found += [(tokens[i][0], claim)] if claim else []
    return [claim for _, claim in sorted(found, key=lambda f: f[0])]


def _scan(tokens):
    """Lexicon items ``(first, end, kind, value)``, vowel targets ``(first, end, word, vowel, position)``."""
    items, targets, i = [], [], 0
    words = [t[2] if t[1] == "tok" else None for t in tokens] + [None, None]
    while i < len(tokens):
        kind, value, nxt = tokens[i][1], words[i], words[i + 1]
        named = (
            value == "vowel" and (nxt or "").isdigit() or value == "word" and nxt and (nxt,) not in _LEXICON
        )
        j, target = _target(tokens, i) if kind in ("quote", "phone") or named else (i, None)
        if target:
            targets.append((i, j, *target))
            i = j
            continue
        size = 2 if " ".join(map(str, words[i : i + 2])) in NUMBERS else 1
        count = (
            int(value) if (value or "").isdigit() else NUMBERS.get(" ".join(map(str, words[i : i + size])))
        )
        if count is not None and words[i + size] in ("pause", "pauses", "pausing"):  # "with 1 pause"
            items.append((i, i + size + 1, "count", count))
            i += size + 1
            continue
        for size in range(_LONGEST, 0, -1):  # the longest phrase wins: "falling in pitch" before "falling"
            entry = _LEXICON.get(tuple(words[i : i + size])) if value else None
            if entry:
                items.append((i, i + size, entry[0], entry[1:]))
                i += size - 1
                break
        i += 1
    return items, targets


def _target(tokens, i):
    """A vowel named at ``tokens[i]``: ``'door' /AO/``, ``/AO/ in 'door'``, ``Vowel 3``, ``the word door``."""
    word = vowel = position = None
    text = [t[2] for t in tokens] + [None, None, None]
    j = i
    if tokens[i][1] == "quote":
        word, j = text[i].lower(), i + 1
    elif text[i] in ("vowel", "word"):
        position, word, j = (
            (int(text[i + 1]), None, i + 2) if text[i] == "vowel" else (None, text[i + 1], i + 2)
        )
    if j < len(tokens) and tokens[j][1] == "phone":
        vowel, j = text[j].strip("/").upper().rstrip("012"), j + 1
        if word is None and position is None and text[j] in ("in", "of"):  # "/AO/ in (the word) 'door'"
            k = j + 1 + (text[j + 1] == "the")
            k += text[k] == "word"
            if k < len(tokens) and tokens[k][1] == "quote":
                word, j = text[k].lower(), k + 1
    vowel = vowel if vowel in ARPABET_VOWELS else None
    return j, ((word, vowel, position) if word or vowel or position else None)


def _bind(tokens, items, targets, n, clause) -> Claim | None:
    """The claim of cue item ``n``: its vowel (if any), subject, quantity, degree, negation and hedge."""
    i, j, _, (level, own, options) = items[n]
    words = [t[2] if t[1] in ("tok", "punct") else None for t in tokens] + [None, None]
    after = next((t for t in targets if t[0] >= j), None)
    if after and after[0] - j <= 4 and all(w in FORWARD_GAP for w in words[j : after[0]]):
        target = after  # "falling pitch on 'door'"
    else:
        target = ([None] + [t for t in targets if t[1] <= i])[-1]  # "'door' is long"
    starts, k = {a: (b, kind) for a, b, kind, _ in items}, j
    while True:  # over a list of cues to the subject they share: "a raised, elevated pitch"
        if words[k] in (",", "and") and starts.get(k + 1, (0, ""))[1] in ("cue", "degree"):
            k += 1
        elif starts.get(k, (0, ""))[1] in ("cue", "degree"):
            k = starts[k][0]
        else:
            break
    subjects = [(a, b, v[0]) for a, b, kind, v in items if kind == "subject"]
    near = [s for s in subjects if s[0] == k or (s[0] == k + 1 and words[k] in FOLLOW_GAP)]
    near += sorted((s for s in subjects if s[1] <= i), key=lambda s: -s[1])  # then the nearest before
    ends = {items[m][1]: items[m] for m in range(n)}
    degree = ends[i][3][0] if i in ends and ends[i][2] == "degree" else ""
    negated = _looks_back(
        words, items, n, NEGATION_WINDOW, lambda w: w in NEGATORS or w.endswith(("n't", "n’t"))
    )
    hedged = _looks_back(words, items, n, HEDGE_WINDOW, None)
    for scope, allowed in (("vowel", VOWEL_MEASURES if target else {}), ("utterance", UTTERANCE_MEASURES)):
        usable = [(c, lvl) for c, lvl in options if c in allowed]
        chosen = next(filter(None, (next((o for o in usable if o[0] in s[2]), None) for s in near)), None)
        if chosen is None and usable and own and (scope == "vowel" or usable[0] == options[0]):
            chosen = usable[0]  # the phrase names its quantity ("loud"); "long" only for a vowel
        elif chosen is None and usable and scope == "vowel" and usable[0][0] == "pitch" and level != "mid":
            chosen = usable[0]  # "'door' is high": its pitch
        if chosen:
            where = dict(zip(("word", "vowel", "position"), target[2:])) if scope == "vowel" else {}
            return Claim(
                allowed[chosen[0]], chosen[1], degree, **where, negated=negated, hedged=hedged, text=clause
            )
    return None


def _looks_back(words, items, n, window, is_marker) -> bool:
    """A marker (a negator; a hedge if ``is_marker`` is None) within ``window`` tokens before cue ``n``."""
    i = items[n][0]
    starts = {a: kind for a, _, kind, _ in items[:n]}
    for k in range(i - 1, max(i - window, 0) - 1, -1):
        if words[k] in STOPS or (is_marker and starts.get(k) == "cue"):
            return False
        if is_marker(words[k] or "") if is_marker else starts.get(k) == "hedge":
            return True
    return False


# -- verification --------------------------------------------------------------------------------------------


def verify_rationale(text: str, features, normalized: NormalizedProsody | None = None) -> RationaleCheck:
    """Judge every cue claim of ``text`` against the measured, normalised prosody of one utterance.

    Args:
        text: The rationale (e.g. ``parse_completion(completion, labels).rationale``).
        features: The utterance's ``ProsodyFeatures``.
        normalized: Its z-scores and bins (``normalizer.transform(features)``); None: relative to the
            utterance itself (:func:`~emollm.prosody.normalize.utterance_relative`), as ``describe`` does.

    Returns:
        A :class:`RationaleCheck`; a claim repeated in the text is judged and counted once.

    Raises:
        ConfigError: ``normalized`` does not have one entry per vowel of ``features``.

    >>> from emollm.prosody.measure import measure
    >>> from emollm.prosody.synth import synthesize
    >>> features = measure(*synthesize("Kids are talking by the door", words_per_minute=300))
    >>> check = verify_rationale("Speech is fast, with many pauses. It is slow.", features)
    >>> [(v.claim.quantity, v.verdict) for v in check.verdicts], check.precision
    ([('articulation_rate', 'true'), ('pause_ratio', 'false'), ('articulation_rate', 'false')], 0.333...)
    """
    normalized = normalized if normalized is not None else utterance_relative(features)
    if len(normalized.vowels) != len(features.vowels) or len(normalized.vowel_bins) != len(features.vowels):
        raise ConfigError(
            f"normalized describes {len(normalized.vowels)} vowels but features has {len(features.vowels)}: "
            "pass normalizer.transform(features) of these same features"
        )
    claims: dict[tuple, Claim] = {}
    for claim in extract_claims(text):
        claims.setdefault(claim.key, claim)
    verdicts = tuple(_verify(claim, features, normalized) for claim in claims.values())
    salient = salient_cues(features, normalized)
    plain = {v.cue for v in verdicts if v.verdict == TRUE and not v.claim.negated and v.claim.level != "mid"}
    return RationaleCheck(verdicts, salient, tuple(c for c in salient if c in plain))


def salient_cues(features, normalized: NormalizedProsody | None = None) -> tuple[str, ...]:
    """The cues worth naming, which :attr:`RationaleCheck.coverage` counts.

    Utterance measures with ``|z| >= SALIENT_Z`` (1 SD); without a z-score, rate and pitch variation outside
    the middle band of :data:`~emollm.prosody.describe.ABSOLUTE_CUTS`. Vowel attributes the ``"vowel"``
    description would mention (bin low/high and ``|z| >= 1``, or a pitch change of at least
    ``CONTOUR_MIN_ST``), as ``"<quantity>@<vowel index>"``.

    >>> salient_cues(type("F", (), {"vowels": [], "utterance": None}), NormalizedProsody(
    ...     "speaker", utterance={"f0_mean_st": 1.4, "hnr_db": 0.2}))
    ('f0_mean_st',)
    """
    normalized = normalized if normalized is not None else utterance_relative(features)
    cues = [q for q in UTTERANCE_QUANTITIES if abs(_number(normalized.utterance.get(q))) >= SALIENT_Z]
    for q, (low, high) in ABSOLUTE_CUTS.items():
        raw = _number(getattr(features.utterance, q, None))
        if not math.isfinite(_number(normalized.utterance.get(q))) and (raw < low or raw > high):
            cues.append(q)
    for index, (vowel, z, bins) in enumerate(zip(features.vowels, normalized.vowels, normalized.vowel_bins)):
        cues += [f"{q}@{index}" for q in SALIENCE_QUANTITIES if _salient(bins.get(q), z.get(q))]
        if abs(_number(vowel.f0_slope_st) * _number(vowel.duration)) >= CONTOUR_MIN_ST:
            cues.append(f"contour@{index}")
    return tuple(cues)


def _verify(claim: Claim, features, normalized: NormalizedProsody) -> ClaimVerdict:
    if claim.scope == "utterance":
        result = _judge_utterance(claim, features, normalized)
    else:
        results = [
            _judge_vowel(claim, features, normalized, i)
            for i, v in enumerate(features.vowels)
            if claim.position in (None, i + 1)
            and claim.vowel in (None, v.phone)
            and _same_word(v.word, claim.word)
        ]
        if not results:
            return ClaimVerdict(claim, UNVERIFIABLE, "no such vowel")
        order = {TRUE: 0, UNVERIFIABLE: 1, FALSE: 2}  # one vowel that agrees makes it true; all must disagree
        result = min(results, key=lambda r: order[r.verdict])
    return replace(result, verdict=UNVERIFIABLE, reason="hedged") if claim.hedged else result


def _judge_utterance(claim: Claim, features, normalized) -> ClaimVerdict:
    q, utt = claim.quantity, features.utterance
    pauses = _number(getattr(utt, "pause_count", None))
    if q == "pause_count":
        if not math.isfinite(pauses):
            return ClaimVerdict(claim, UNVERIFIABLE, "unmeasured", cue=q)
        verdict = TRUE if (int(pauses) == int(claim.level)) != claim.negated else FALSE
        measured = f"{int(pauses)} pause{'s' * (int(pauses) != 1)}"
        return ClaimVerdict(
            claim, verdict, "agrees" if verdict == TRUE else "disagrees", measured, value=pauses, cue=q
        )
    z, raw = _number(normalized.utterance.get(q)), _number(getattr(utt, q, None))
    if math.isfinite(z):
        return _judge_z(claim, z, normalized.utterance_bins.get(q), raw, q)
    if q in ABSOLUTE_CUTS and math.isfinite(raw) and not claim.degree:
        return _judge_band(claim, raw, *ABSOLUTE_CUTS[q], TOLERANCE_RAW[q], q)
    if q == "pause_ratio" and claim.level == "high" and pauses == 0:  # "many pauses" where there are none
        return _negate(claim, FALSE, "0 pauses", math.nan, 0.0, q, opposite=TRUE)
    return ClaimVerdict(claim, UNVERIFIABLE, "no reference", value=raw, cue=q)


def _judge_vowel(claim: Claim, features, normalized, index: int) -> ClaimVerdict:
    vowel, q, cue = features.vowels[index], claim.quantity, f"{claim.quantity}@{index}"
    if q == "contour":
        change = _number(vowel.f0_slope_st) * _number(vowel.duration)
        if math.isfinite(change):
            return _judge_band(claim, change, -CONTOUR_MIN_ST, CONTOUR_MIN_ST, TOLERANCE_RAW["contour"], cue)
    elif math.isfinite(z := _number(normalized.vowels[index].get(q))):
        return _judge_z(claim, z, normalized.vowel_bins[index].get(q), math.nan, cue)
    return ClaimVerdict(claim, UNVERIFIABLE, "unmeasured", cue=cue)


def _judge_z(claim: Claim, z: float, bin_: str | None, raw: float, cue: str) -> ClaimVerdict:
    """The descriptions' two level rules: the bin (plain levels) or the 7-step word of ``measure_level``."""

    def verdict(level: str, degree: str) -> str:
        prefixes = {"": ("slightly ", "", "very "), "slightly": ("slightly ",), "very": ("very ",)}[degree]
        if measure_level(z) in ({"typical"} if level == "mid" else {p + level for p in prefixes}):
            return TRUE
        if not degree and bin_ == level:
            return TRUE
        a, b, c = LEVEL_CUTS
        lo, hi = {"": (a, math.inf), "slightly": (a, b), "very": (c, math.inf)}[degree]
        lo, hi = (-a, a) if level == "mid" else (lo, hi) if level == "high" else (-hi, -lo)
        return FALSE if max(lo - z, z - hi) > TOLERANCE_Z else UNVERIFIABLE

    opposite = {"high": "low", "low": "high"}.get(claim.level)
    positive = verdict(claim.level, claim.degree)
    return _negate(claim, positive, measure_level(z), z, raw, cue, opposite and verdict(opposite, ""))


def _judge_band(claim: Claim, value: float, low: float, high: float, tol: float, cue: str) -> ClaimVerdict:
    """Levels cut on a raw value, as the descriptions cut them (a contour is rising *at* the cut already)."""
    inclusive = claim.quantity == "contour"
    above, below = (value >= high, value <= low) if inclusive else (value > high, value < low)
    measured = "high" if above else "low" if below else "mid"
    bands = {"low": (-math.inf, low), "mid": (low, high), "high": (high, math.inf)}

    def verdict(level: str) -> str:
        lo, hi = bands[level]
        return TRUE if measured == level else FALSE if max(lo - value, value - hi) > tol else UNVERIFIABLE

    opposite = {"high": "low", "low": "high"}.get(claim.level)
    words = {"low": "falling", "mid": "level", "high": "rising"} if inclusive else {}
    return _negate(claim, verdict(claim.level), words.get(measured, measured), math.nan, value, cue,
                   opposite and verdict(opposite))  # fmt: skip


def _negate(claim, positive, measured, z, value, cue, opposite) -> ClaimVerdict:
    """The verdict of ``claim`` given that of its positive form (``opposite``: that of the opposite level).

    "not X" is false when X is true, and true only when decisive: the measure lies clearly on the other side
    ("not loud" when quiet; "not typical" when high or low). "not loud" about a moderate voice, or "not very
    loud" about a loud one, stays unverifiable.
    """
    verdict = positive
    if claim.negated:
        decisive = opposite == TRUE if claim.level in ("low", "high") else positive == FALSE
        verdict = FALSE if positive == TRUE else TRUE if positive == FALSE and decisive else UNVERIFIABLE
    reason = {TRUE: "agrees", FALSE: "disagrees"}.get(verdict)
    reason = reason or (
        "negation not decisive" if claim.negated and positive != UNVERIFIABLE else "borderline"
    )
    return ClaimVerdict(claim, verdict, reason, measured, z, value, cue)


def _salient(level: str | None, z) -> bool:
    return level in ("low", "high") and abs(_number(z)) >= SALIENT_Z


def _same_word(measured: str | None, named: str | None) -> bool:
    """Transcript words match case-insensitively, also when cut as the ``"measures"`` style cuts them."""
    if named is None or not measured:
        return named is None
    a, b = "".join(measured.lower().split()), "".join(named.lower().split())
    return a == b or (len(b) >= 20 and a.startswith(b))


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
