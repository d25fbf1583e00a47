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

>>> from emollm.prosody.synth import synthesize
>>> audio, truth = synthesize("Kids are talking by the door")
>>> [v.phone for v in align(audio, "Kids are talking by the door").vowels]
['IH', 'AA', 'AO', 'IH', 'AY', 'AH', 'AO']
"""

from __future__ import annotations

import functools
import re
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
        on_failure: What to do when forced alignment fails: ``"nuclei"`` (fall back to syllable nuclei and
            say so in ``notes``) or ``"raise"``.
        sample_rate: Sample rate of an array ``audio``, Hz.

    Returns:
        The :class:`~emollm.prosody.alignment.Alignment`; ``method`` says which way was used.

    Raises:
        AlignmentError: an empty transcript (an empty string is a mistake; pass None for no transcript),
            a TextGrid that does not match the audio, or a failed alignment with ``on_failure="raise"``.
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
        if on_failure == "raise":
            raise
        words, skipped = tokenize(transcript)
        fallback = detect_nuclei(audio)
        fallback.transcript = transcript
        if words:
            fallback.notes.insert(0, f"forced alignment failed ({exc}); fell back to syllable nuclei")
        else:  # another script: the aligner's dictionary and acoustic model are English
            fallback.notes.insert(
                0,
                f"the transcript has no English words to align ({', '.join(skipped[:5])}); fell back to "
                f"syllable nuclei",
            )
        return fallback
