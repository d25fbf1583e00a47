"""Speech recognition for audio without a transcript: the words said, and when each was said.

Two backends, chosen by name:

* ``"pocketsphinx"`` (the default, offline): the en-US acoustic model, the generic trigram language model
  (``en-us.lm.bin``) and the CMU dictionary that ship inside the ``pocketsphinx`` package emollm already
  uses for forced alignment. Word times are at 10 ms resolution; each word's confidence is its posterior
  probability in the recogniser's word lattice. Fast (0.67 s per 3.7 s RAVDESS clip on one core) and
  weak: 41 % of words wrong on RAVDESS's 1080 acted sentences, about half on Praat's
  synthetic voice (docs/asr.md gives the measured numbers).
* ``"hf:<local folder or hub id>"``: any transformers speech-recognition model, through transformers'
  ``automatic-speech-recognition`` pipeline with word timestamps (a Whisper checkpoint, or a CTC model such
  as wav2vec 2.0). A hub id needs network, or the model in the Hugging Face cache; nothing is fetched
  offline. No confidence.

``"none"`` (in :data:`ASR_BACKENDS`) is what callers such as :meth:`emollm.EmotionReasoner.predict` accept for
"do not transcribe"; :func:`transcribe` itself refuses it.

The recognised words go where a transcript would: :meth:`~emollm.EmotionReasoner.predict` shows them in the
prompt and force-aligns them for the vowels, with the aligner's own word pass (seeding the phone pass with
the recogniser's word times instead agreed no better with the alignment of the known sentence on RAVDESS;
docs/asr.md).

>>> from emollm.prosody.synth import synthesize
>>> audio, _ = synthesize("Please call me tomorrow morning", voice="Female2")
>>> transcript = transcribe(audio)
>>> transcript.backend, len(transcript.words) > 0, transcript.words[0].start < transcript.words[-1].end
('pocketsphinx', True, True)
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emollm.audio import SILENCE_PEAK, Audio, load_audio
from emollm.errors import ConfigError, ModelError

ASR_BACKENDS = ("pocketsphinx", "hf:<path or hub id>", "none")
"""What callers accept as a speech recognition backend (for messages and help)."""

FRAME = 0.01  # pocketsphinx's frame step, seconds
_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")  # <s>, </s>, <sil>, [NOISE], [SPEECH], ++UH++
_VARIANT = re.compile(r"\(\d+\)$")  # "read(2)": the dictionary's second pronunciation


@dataclass
class RecognizedWord:
    """One recognised word.

    Attributes:
        word: The word as the recogniser spells it (pocketsphinx: lower case; Whisper: with its casing and
            punctuation).
        start: Start, seconds from the audio's start.
        end: End, seconds from the audio's start (``start <= end <= duration``).
        confidence: In [0, 1] where the backend gives one (pocketsphinx: the word's lattice posterior).
    """

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass
class Transcript:
    """What :func:`transcribe` heard.

    Attributes:
        text: The words joined by spaces ("" when nothing was recognised).
        words: The words with their times, in order.
        backend: ``"pocketsphinx"`` or ``"hf:<path or hub id>"``.
        confidence: Mean word confidence in [0, 1] where the backend gives one, else None.
        notes: What to know about the result, e.g. that no speech was recognised.
    """

    text: str
    words: list[RecognizedWord]
    backend: str
    confidence: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field (words as dicts)."""
        return asdict(self)


def check_backend(backend: str) -> str | None:
    """Why ``backend`` is not a speech recognition backend name, or None when it is one.

    >>> check_backend("pocketsphinx") is None and check_backend("hf:./whisper-small") is None
    True
    >>> check_backend("whisper")
    "unknown speech recognition backend 'whisper'; accepted: pocketsphinx, hf:<path or hub id>, none"
    """
    if isinstance(backend, str) and (
        backend in ("pocketsphinx", "none") or (backend.startswith("hf:") and backend[3:].strip())
    ):
        return None
    if isinstance(backend, str) and backend.startswith("hf:"):
        return "speech recognition backend 'hf:' names no model; give hf:<local folder or hub id>"
    return f"unknown speech recognition backend {backend!r}; accepted: {', '.join(ASR_BACKENDS)}"


def transcribe(audio, backend: str = "pocketsphinx", *, sample_rate: int | None = None) -> Transcript:
    """Recognise the words of ``audio`` and when each was said.

    Args:
        audio: A file path, an array (with ``sample_rate``) or an :class:`~emollm.audio.Audio` (used as it
            is): anything :func:`~emollm.audio.load_audio` accepts.
        backend: ``"pocketsphinx"`` (offline, the default) or ``"hf:<local folder or hub id>"``.
        sample_rate: Sample rate of an array ``audio``, Hz.

    Returns:
        A :class:`Transcript`. Audio with no speech in it (noise, music, a silent
        :class:`~emollm.audio.Audio`) gives no words and a note saying so, not an error.

    Raises:
        ConfigError: an unknown backend, or ``"none"``. AudioError: ``audio`` cannot be loaded (a silent
            file or array included, as everywhere in emollm). ModelError: the ``hf:`` model cannot be found
            or loaded, or is not a speech recognition model.
    """
    problem = check_backend(backend)
    if problem:
        raise ConfigError(problem)
    if backend == "none":
        raise ConfigError("backend 'none' transcribes nothing: do not call transcribe() for it")
    audio = load_audio(audio, sample_rate)
    if float(np.max(np.abs(audio.samples), initial=0.0)) < SILENCE_PEAK:
        return Transcript("", [], backend, notes=["no speech recognised: the audio is silent"])
    if backend == "pocketsphinx":
        return _transcribe_pocketsphinx(audio)
    return _transcribe_hf(audio, backend[3:].strip())


def _finish(words: list[RecognizedWord], backend: str, notes: list[str] | None = None) -> Transcript:
    notes = list(notes or [])
    if not words:
        notes.insert(0, f"no speech recognised: {backend} found no words (noise, music or silence?)")
    scores = [w.confidence for w in words if w.confidence is not None]
    confidence = round(float(np.mean(scores)), 4) if words and len(scores) == len(words) else None
    return Transcript(" ".join(w.word for w in words), words, backend, confidence, notes)


# -- pocketsphinx --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _pocketsphinx_decoder():
    """The large-vocabulary decoder (bundled model, LM and dictionary) and its initial cepstral mean."""
    import os

    from pocketsphinx import Decoder, get_model_path

    model = get_model_path()
    decoder = Decoder(
        hmm=os.path.join(model, "en-us", "en-us"),
        lm=os.path.join(model, "en-us", "en-us.lm.bin"),
        dict=os.path.join(model, "en-us", "cmudict-en-us.dict"),
        samprate=16000,
        loglevel="FATAL",
    )
    return decoder, decoder.get_cmn()


def decode_pocketsphinx(audio: Audio):
    """Run the recogniser over ``audio``; returns the decoder (its ``seg()`` holds the result) and the offset.

    Decodes what :func:`emollm.prosody.align.decoder_input` gives (the speech span, padded), from the
    model's initial cepstral mean and a fresh noise estimate, so that a result does not depend on what was
    decoded before.
    """
    from emollm.prosody.align import decode_utterance, decoder_input

    pcm, offset = decoder_input(audio)
    decoder, cmn = _pocketsphinx_decoder()
    decode_utterance(decoder, cmn, pcm)
    return decoder, offset


def _transcribe_pocketsphinx(audio: Audio) -> Transcript:
    try:
        decoder, offset = decode_pocketsphinx(audio)
        segments = [(s.word, s.start_frame, s.end_frame, s.prob) for s in decoder.seg()]
    except RuntimeError as exc:  # pocketsphinx's way of failing on an utterance
        return _finish([], "pocketsphinx", [f"pocketsphinx failed on this audio: {exc}"])
    words = []
    for name, first, last, posterior in segments:
        if _FILLER.match(name):
            continue
        start = min(max(first * FRAME + offset, 0.0), audio.duration)
        end = min(max((last + 1) * FRAME + offset, start), audio.duration)
        confidence = round(min(max(float(posterior), 0.0), 1.0), 4)
        words.append(RecognizedWord(_VARIANT.sub("", name), _floor4(start), _floor4(end), confidence))
    return _finish(words, "pocketsphinx")


# -- transformers --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _hf_pipeline(source: str):
    """The transformers ASR pipeline for a local folder or hub id, loaded once; never fetched offline."""
    from emollm.modeling.base import _hub_offline_reason, limit_threads

    limit_threads()
    folder = Path(source).expanduser()
    if folder.is_dir():
        model = str(folder)
    elif folder.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelError(
            f"speech recognition model {source!r} is not a folder; give hf:<folder written by "
            "save_pretrained> or hf:<hub id>"
        )
    else:
        model = source
        offline = _hub_offline_reason()
        if offline:
            from huggingface_hub import snapshot_download

            try:
                model = snapshot_download(source, local_files_only=True)
            except Exception as exc:  # not cached, or not a valid repo id: either way, not here
                raise ModelError(
                    f"speech recognition model {source!r} is not a local folder and not in the Hugging Face "
                    f"cache, and the hub cannot be reached ({offline}); give hf:<local folder>, or use "
                    "--asr pocketsphinx (offline)"
                ) from exc
    from transformers import pipeline

    try:
        return pipeline("automatic-speech-recognition", model=model)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"could not load {source!r} as a transformers speech recognition model: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _transcribe_hf(audio: Audio, source: str) -> Transcript:
    recogniser = _hf_pipeline(source)
    long = {"chunk_length_s": 30} if audio.duration > 30 else {}  # Whisper hears 30 s at a time

    def recognise(timestamps):  # a new dict each time: the pipeline takes the samples out of it
        inputs = {"raw": audio.samples, "sampling_rate": audio.sample_rate}
        return recogniser(inputs, return_timestamps=timestamps, **long)

    notes = []
    try:
        result = recognise("word")
    except ValueError as exc:
        if "alignment_heads" not in str(exc):
            raise ModelError(f"speech recognition with {source!r} failed: {exc}") from exc
        # A Whisper checkpoint without cross-attention alignment heads has segment times only
        result = recognise(True)
        result = {"chunks": _spread_over_segments(result.get("chunks") or [])}
        notes.append(
            "the model gives no word times (its generation config has no alignment_heads): word times are "
            "spread over each segment by length"
        )
    words = []
    previous_end = 0.0
    for chunk in result.get("chunks") or []:
        text = "".join(ch for ch in " ".join(str(chunk.get("text", "")).split()) if ch.isprintable())
        start, end = (tuple(chunk.get("timestamp") or ()) + (None, None))[:2]
        start = previous_end if start is None else min(max(float(start), 0.0), audio.duration)
        end = audio.duration if end is None else min(max(float(end), start), audio.duration)
        previous_end = end
        if text:
            words.append(RecognizedWord(text, _floor4(start), _floor4(end)))
    return _finish(words, f"hf:{source}", notes)


def _floor4(seconds: float) -> float:
    """A time to 0.1 ms, rounded down: never past the end of the audio it was clamped to."""
    return math.floor(seconds * 10_000) / 10_000


def _spread_over_segments(chunks: list[dict]) -> list[dict]:
    """Segment chunks -> word chunks whose times share out each segment by the words' lengths."""
    out = []
    for chunk in chunks:
        words = str(chunk.get("text", "")).split()
        start, end = (tuple(chunk.get("timestamp") or ()) + (None, None))[:2]
        if not words or start is None or end is None:
            out += [{"text": w, "timestamp": (start, end)} for w in words]
            continue
        lengths = np.array([len(w) + 1 for w in words], dtype=float)
        edges = start + np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum() * (end - start)
        out += [
            {"text": w, "timestamp": (float(a), float(b))} for w, a, b in zip(words, edges[:-1], edges[1:])
        ]
    return out


# -- scoring -------------------------------------------------------------------------------------------------


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """Word edits (substitutions, deletions, insertions) from ``reference`` to ``hypothesis``, and its length.

    Case and punctuation are ignored. The word error rate is ``errors / length``.

    >>> word_errors("Kids are talking by the door.", "kids as talking by that door")
    (2, 6)
    """
    ref = re.findall(r"[\w']+", reference.lower())
    hyp = re.findall(r"[\w']+", hypothesis.lower())
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1], len(ref)
