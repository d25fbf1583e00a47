"""Where are the vowels? Audio (+ transcript or TextGrid) -> word and phone intervals, vowels with stress.

Three ways, chosen by what you give :func:`align`:

* a **transcript**: pocketsphinx's bundled en-US acoustic model force-aligns the words in two passes
  (``set_align_text`` for words, ``set_alignment`` for phones), at 10 ms resolution, choosing among the
  pronunciation variants of its dictionary ("are" may come out as ER). Lexical stress comes from the CMU
  Pronouncing Dictionary entry matching the aligned phones; words neither dictionary has get a
  letter-to-sound guess, reported in ``Alignment.oov_words`` (:mod:`emollm.prosody.pronunciation`);
* a **TextGrid** (Montreal Forced Aligner output, Praat's synthesiser, hand labels): trusted as it is;
  ARPAbet or IPA phone labels are mapped to ARPAbet (:mod:`emollm.prosody.textgrid`);
* **neither**: syllable nuclei are found from intensity peaks in voiced regions (de Jong & Wempe, 2009;
  :mod:`emollm.prosody.nuclei`). Each nucleus becomes a vowel labelled ``"NUC"`` with no word, and
  ``method == "nuclei"`` says so.

The result is an :class:`~emollm.prosody.alignment.Alignment`.

A forced alignment always places every word somewhere, even when the transcript is not what is said.
:func:`check_alignment` tells a plausible alignment from nonsense by how well each phone fits its frames
compared with free phone recognition (a pocketsphinx phone loop over the same audio): :func:`align` falls back
to syllable nuclei when the words as a whole fit far worse (``on_failure="raise"`` raises instead), and keeps
the alignment with a note when only a few phones fit badly.

>>> from emollm.prosody.synth import synthesize
>>> audio, truth = synthesize("Kids are talking by the door")
>>> [v.phone for v in align(audio, "Kids are talking by the door").vowels]
['IH', 'AA', 'AO', 'IH', 'AY', 'AH', 'AO']
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emollm.audio import Audio, load_audio
from emollm.errors import AlignmentError, ConfigError
from emollm.prosody.alignment import Alignment, Phone, Word
from emollm.prosody.nuclei import detect_nuclei
from emollm.prosody.pronunciation import cmu_lookup, pronounce, tokenize
from emollm.prosody.textgrid import (
    ARPABET_VOWELS,
    is_vowel,
    pick_tiers,
    read_textgrid,
    textgrid_tiers,
    to_arpabet,
)

FRAME = 0.01  # pocketsphinx's frame step, seconds
PAD = 0.2  # seconds of silence added on both sides before aligning

# Plausibility of a pocketsphinx alignment (:func:`check_alignment`), in pocketsphinx's acoustic log units per
# 10 ms frame relative to a free phone loop. Chosen on the RAVDESS training actors (01-14) with a right
# transcript, the other RAVDESS sentence and an unrelated one (benchmarks/alignment_plausibility.py). The
# fallback threshold is lower than the -23.5 at which 0.5 % of right transcripts fall: synthesised speech
# at 250 words per minute reaches -25 with the right transcript.
IMPLAUSIBLE_WORD_FIT = -30.0  # words' mean fit below this: fall back (0.4 % of right transcripts on train)
DOUBTFUL_PHONE_FIT = -85.0  # mean fit of the worst phones below this: keep, with a note (0.8 % on train)
WORST_PHONES = 3  # how many of the worst-fitting phones are averaged
QUIET_DBFS = -60.0  # loudest 10 ms frames below this: a note, and the aligner is given a louder copy


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


@functools.lru_cache(maxsize=1)
def _phone_loop():
    """A pocketsphinx decoder for free phone recognition, what :func:`check_alignment` compares with."""
    import os

    from pocketsphinx import Decoder, get_model_path

    model = get_model_path()
    decoder = Decoder(
        hmm=os.path.join(model, "en-us", "en-us"),
        allphone=os.path.join(model, "en-us-phone.lm.bin"),
        lm=None,
        samprate=16000,
        loglevel="FATAL",
        bestpath=False,
        **DECODERS[0],
    )
    return decoder, decoder.get_cmn()


def decode_utterance(decoder, cmn: str, pcm: bytes) -> None:
    """Decode ``pcm`` (16 kHz int16) as one utterance, from the model's initial cepstral mean ``cmn``.

    ``reinit_feat`` also resets the noise estimate: pocketsphinx otherwise carries both over from the
    previous utterance, and a result would depend on what was decoded before.
    """
    decoder.reinit_feat()
    decoder.set_cmn(cmn)
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _loop_scores(pcm: bytes, frames: int) -> np.ndarray | None:
    """Acoustic score of each frame on the best free phone path (each phone's score spread evenly)."""
    decoder, cmn = _phone_loop()
    decode_utterance(decoder, cmn, pcm)
    logmath = decoder.get_logmath()
    scores = np.zeros(frames + 1)
    segments = list(decoder.seg())
    if not segments:
        return None
    for segment in segments:  # ``ascore`` comes back as a probability; its log is the score
        first, last = segment.start_frame, min(segment.end_frame, frames)
        if last >= first:
            scores[first : last + 1] = logmath.log(segment.ascore) / (segment.end_frame - first + 1)
    return scores


def _run_alignment(decoder, cmn: str, words: list[str], pcm: bytes):
    """The two passes; None when the word pass finds no path.

    Each pass starts from the model's initial cepstral mean ``cmn``: pocketsphinx otherwise carries its
    estimate over from the previous utterance, and an alignment would depend on what was aligned before.
    """
    decoder.set_align_text(" ".join(words))
    decode_utterance(decoder, cmn, pcm)
    if decoder.hyp() is None:
        return None
    decoder.set_alignment()
    decode_utterance(decoder, cmn, pcm)
    return decoder.get_alignment()


def decoder_input(audio: Audio) -> tuple[bytes, float]:
    """What pocketsphinx decodes: the speech span as 16-bit PCM bytes, and its offset in the audio, seconds.

    Only the speech span is decoded (leading and trailing silence cost time and nothing else), padded with
    :data:`PAD` of digital silence: pocketsphinx's phone pass fails when speech starts at the very first
    frame. Very quiet speech (below :data:`QUIET_DBFS`) is made louder first: pocketsphinx reads 16-bit
    samples, and it would be lost. Frame ``n`` of the decoded signal is at ``offset + n * FRAME`` seconds.
    """
    first, last = speech_span(audio)
    offset = first / audio.sample_rate - PAD
    pad = np.zeros(int(PAD * audio.sample_rate), dtype=np.int16)
    speech = audio.samples[first:last]
    if speech_level(audio) < QUIET_DBFS:
        speech = speech * (0.5 / max(float(np.max(np.abs(speech))), 1e-9))
    speech = (np.clip(speech, -1.0, 1.0) * 32767).astype(np.int16)
    return np.concatenate([pad, speech, pad]).tobytes(), offset


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
    pcm, offset = decoder_input(audio)
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

    # Copied out in one pass: pocketsphinx frees its iterators when they run out, so a phone iterator taken
    # from a word after the word iterator ended would read freed memory.
    entries = [
        (entry.name, entry.start, entry.duration, [(p.name, p.start, p.duration, p.score) for p in entry])
        for entry in result
    ]
    loop = _loop_scores(pcm, sum(duration for _, _, duration, _ in entries))
    out_words: list[Word] = []
    out_phones: list[Phone] = []
    for raw_name, w_start, w_duration, phones in entries:
        name = re.sub(r"\(\d+\)$", "", raw_name)
        if name in {"<s>", "</s>", "<sil>", "[NOISE]", "<noise>"}:
            continue
        start, end = _frames_to_seconds(w_start, w_duration, offset, audio.duration)
        own, source = pronunciations.get(name, ([], "cmudict"))
        out_words.append(Word(text=name, start=start, end=end, pronunciation=source))
        aligned = [(p, *_frames_to_seconds(first, n, offset, audio.duration)) for p, first, n, _ in phones]
        stresses = _stress_for(name, [n for n, _, _ in aligned], own)
        fits = [  # acoustic score per frame, relative to the free phone loop's over the same frames
            None if loop is None or n <= 0 else round((score - float(loop[first : first + n].sum())) / n, 2)
            for _, first, n, score in phones
        ]
        for (phone, p_start, p_end), stress, fit in zip(aligned, stresses, fits):
            out_phones.append(
                Phone(
                    phone=phone,
                    start=p_start,
                    end=p_end,
                    stress=stress,
                    word=name,
                    word_index=len(out_words) - 1,
                    label=phone,
                    fit=fit,
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
    level = _frame_levels(audio)
    if len(level) < 3:
        return 0, len(audio.samples)
    loud = np.flatnonzero(level >= np.percentile(level, 99) + floor_db)
    pad = int(margin * audio.sample_rate)
    return max(int(loud[0]) * hop - pad, 0), min((int(loud[-1]) + 1) * hop + pad, len(audio.samples))


def _frame_levels(audio: Audio) -> np.ndarray:
    """Level of each 10 ms frame, dB re full scale (a full-scale square wave is 0 dBFS)."""
    hop = audio.sample_rate // 100
    n = len(audio.samples) // hop
    frames = audio.samples[: n * hop].reshape(n, hop).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def speech_level(audio: Audio) -> float:
    """Level of the loudest speech, dBFS: the 99th percentile of the 10 ms frame levels.

    RAVDESS clips lie between -55 and -6 dBFS; below :data:`QUIET_DBFS` (-60) :func:`align` adds a note
    and gives the aligner a louder copy.

    >>> import numpy as np
    >>> tone = Audio(0.1 * np.sin(np.arange(16000) / 3).astype(np.float32), 16000)
    >>> round(speech_level(tone))
    -23
    """
    level = _frame_levels(audio)
    return float(np.percentile(level, 99)) if len(level) else float("-inf")


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


# -- plausibility --------------------------------------------------------------------------------------------


@dataclass
class AlignmentCheck:
    """How plausible a pocketsphinx alignment is (:func:`check_alignment`).

    Attributes:
        verdict: ``"plausible"``, ``"doubtful"`` (a few phones fit badly: kept, with a note) or
            ``"implausible"`` (the words as a whole fit badly: :func:`align` falls back or raises).
        word_fit: Mean fit of the words' frames (see :attr:`~emollm.prosody.alignment.Phone.fit`);
            NaN when the phones carry no fit.
        worst_phone_fit: Mean fit of the :data:`WORST_PHONES` worst-fitting phones; NaN likewise.
        worst_words: The words those phones belong to, in time order.
        vowels_at_minimum: Share of vowels at pocketsphinx's shortest phone (3 frames, 30 ms): squeezed
            vowels. Reported, not used by the verdict (it separates wrong transcripts less well).
        reason: Why, in words (empty when plausible).
    """

    verdict: str
    word_fit: float
    worst_phone_fit: float
    worst_words: list[str] = field(default_factory=list)
    vowels_at_minimum: float = float("nan")
    reason: str = ""


def check_alignment(alignment: Alignment) -> AlignmentCheck:
    """Is this pocketsphinx alignment plausible, or is the transcript probably not what was said?

    Every phone of a pocketsphinx alignment carries its ``fit``: its acoustic score per frame minus that of
    free phone recognition over the same frames. A wrong transcript is forced onto speech it does not fit,
    so its phones score far below what the phone loop finds. Two rules, with thresholds chosen on the
    RAVDESS training actors (benchmarks/alignment_plausibility.py; docs/prosody.md gives the rates):

    * ``implausible``: the words' mean fit is below :data:`IMPLAUSIBLE_WORD_FIT` (-30): most of the
      transcript does not match (an unrelated sentence);
    * ``doubtful``: the mean fit of the :data:`WORST_PHONES` worst phones is below
      :data:`DOUBTFUL_PHONE_FIT` (-85): some words do not match (a similar sentence, a misheard word, or
      a pronunciation far from the dictionary's);
    * ``plausible`` otherwise, and for alignments without fits (TextGrids, nuclei).

    >>> from emollm.prosody.synth import synthesize
    >>> audio, _ = synthesize("Kids are talking by the door")
    >>> check_alignment(align_transcript(audio, "Kids are talking by the door")).verdict
    'plausible'
    >>> check_alignment(align_transcript(audio, "My money is gone")).verdict
    'implausible'
    """
    phones = [p for p in alignment.phones if p.fit is not None and p.duration > 0]
    vowels = [p for p in alignment.phones if p.is_vowel and p.fit is not None]
    at_minimum = float(np.mean([v.duration <= 3 * FRAME + 1e-6 for v in vowels])) if vowels else float("nan")
    if not phones:
        return AlignmentCheck("plausible", float("nan"), float("nan"), vowels_at_minimum=at_minimum)
    durations = np.array([p.duration for p in phones])
    fits = np.array([p.fit for p in phones])
    word_fit = float(np.sum(fits * durations) / np.sum(durations))
    worst = sorted(np.argsort(fits, kind="stable")[:WORST_PHONES])
    worst_fit = float(np.mean(fits[worst]))
    worst_words = list(dict.fromkeys(phones[i].word for i in worst if phones[i].word))
    check = AlignmentCheck("plausible", word_fit, worst_fit, worst_words, at_minimum)
    if word_fit < IMPLAUSIBLE_WORD_FIT:
        check.verdict = "implausible"
        check.reason = (
            f"the words fit the speech {-word_fit:.0f} units per frame worse than free phone recognition, "
            f"more than {-IMPLAUSIBLE_WORD_FIT:.0f}: the transcript is probably not what is said"
        )
    elif worst_fit < DOUBTFUL_PHONE_FIT:
        check.verdict = "doubtful"
        words = ", ".join(repr(w) for w in worst_words)
        check.reason = (
            f"phones of {words} fit the speech {-worst_fit:.0f} units per frame worse than free phone "
            f"recognition, more than {-DOUBTFUL_PHONE_FIT:.0f}: those words may not be what is said"
        )
    return check


# -- entry point ---------------------------------------------------------------------------------------------


def align(
    audio,
    transcript: str | None = None,
    textgrid=None,
    *,
    word_tier: str | None = None,
    phone_tier: str | None = None,
    on_failure: str = "nuclei",
    sample_rate: int | None = None,
) -> Alignment:
    """Find words, phones and vowels: from a TextGrid if given, else a transcript, else syllable nuclei.

    Args:
        audio: An :class:`~emollm.audio.Audio` (used as it is), a file path, or anything
            :func:`~emollm.audio.load_audio` accepts (an array needs ``sample_rate``).
        transcript: What is said. Ignored when a TextGrid is given.
        textgrid: A TextGrid path or parselmouth ``TextGrid`` with word and phone tiers (trusted).
        word_tier: Name of the TextGrid's word tier, when it is not called ``words``/``word``.
        phone_tier: Name of the TextGrid's phone tier, when it is not called ``phones``/``phone``.
        on_failure: What to do when forced alignment fails, or finds an alignment that
            :func:`check_alignment` calls implausible: ``"nuclei"`` (fall back to syllable nuclei and say
            so in ``notes``) or ``"raise"``. A doubtful alignment is kept either way, with a note.
        sample_rate: Sample rate of an array ``audio``, Hz.

    Returns:
        The :class:`~emollm.prosody.alignment.Alignment`; ``method`` says which way was used, ``notes``
        what was doubtful or degraded (a fallback, a doubtful alignment, very quiet audio).

    Raises:
        AlignmentError: an empty transcript (an empty string is a mistake; pass None for no transcript),
            a TextGrid that does not match the audio, or a failed or implausible alignment with
            ``on_failure="raise"``.
        AudioError: ``audio`` is not an :class:`~emollm.audio.Audio` and cannot be loaded.

    >>> from emollm.prosody.synth import synthesize
    >>> audio, _ = synthesize("Kids are talking by the door")
    >>> alignment = align(audio)
    >>> alignment.method, alignment.notes[0]
    ('nuclei', 'no transcript')
    """
    if on_failure not in ("nuclei", "raise"):
        raise ConfigError(f"on_failure must be 'nuclei' or 'raise', got {on_failure!r}")
    if not isinstance(audio, Audio):  # an Audio was loaded and validated already: not a second time
        audio = load_audio(audio, sample_rate)
    if textgrid is not None:
        grid = alignment_from_textgrid(
            textgrid, duration=audio.duration, word_tier=word_tier, phone_tier=phone_tier
        )
        return _with_level_note(grid, audio)
    if transcript is None:
        nuclei = detect_nuclei(audio)
        nuclei.notes.insert(0, "no transcript")
        return _with_level_note(nuclei, audio)
    if not transcript.strip():
        raise AlignmentError(
            "the transcript is empty; pass transcript=None (no transcript) to find syllable nuclei instead"
        )
    try:
        alignment = align_transcript(audio, transcript)
    except AlignmentError as exc:
        if on_failure == "raise":
            raise
        words, skipped = tokenize(transcript)
        if words:
            note = f"forced alignment failed ({exc}); fell back to syllable nuclei"
        else:  # another script: the aligner's dictionary and acoustic model are English
            note = (
                f"the transcript has no English words to align ({', '.join(skipped[:5])}); fell back to "
                f"syllable nuclei"
            )
        return _with_level_note(_nuclei_instead(audio, transcript, note), audio)
    check = check_alignment(alignment)
    if check.verdict == "implausible":
        if on_failure == "raise":
            raise AlignmentError(
                f"the alignment of {transcript!r} looks implausible ({check.reason}); check the transcript, "
                f"or pass on_failure='nuclei' to fall back to syllable nuclei"
            )
        note = f"the alignment looks implausible ({check.reason}); fell back to syllable nuclei"
        return _with_level_note(_nuclei_instead(audio, transcript, note), audio)
    if check.verdict == "doubtful":
        alignment.notes.append(f"the alignment may be wrong in places ({check.reason})")
    return _with_level_note(alignment, audio)


def _nuclei_instead(audio: Audio, transcript: str, note: str) -> Alignment:
    fallback = detect_nuclei(audio)
    fallback.transcript = transcript
    fallback.notes.insert(0, note)
    return fallback


def _with_level_note(alignment: Alignment, audio: Audio) -> Alignment:
    """Add a note when the speech is very quiet (below :data:`QUIET_DBFS`)."""
    level = speech_level(audio)
    if level < QUIET_DBFS:
        aligner = "; pocketsphinx aligned a louder copy" if alignment.method == "pocketsphinx" else ""
        alignment.notes.append(
            f"the audio is very quiet (its loudest speech is at {level:.0f} dBFS, below {QUIET_DBFS:.0f}): "
            f"check the recording level; intensities are as recorded{aligner}"
        )
    return alignment
