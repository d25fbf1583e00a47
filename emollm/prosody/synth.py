"""Speech with known answers: Praat's built-in eSpeak synthesiser, with its phone TextGrid.

Used by the tests (alignment accuracy, measures that follow the synthesiser's pitch and rate), the
benchmarks and the demo, so no recording has to be shipped. The synthesiser writes exact word and phone
intervals, which :func:`synthesize` returns as a ground-truth :class:`~emollm.prosody.align.Alignment`.

eSpeak keeps state between calls: the same text synthesised twice in one process can differ by a few
milliseconds per phone (the TextGrid always matches its own audio). eSpeak scales F0 by about
``0.25 + 0.75 * pitch``, so ``pitch=1.5`` raises F0 by about 5.5 semitones, not 7.

>>> audio, truth = synthesize("Kids are talking by the door", pitch=1.2, words_per_minute=150)
>>> [v.phone for v in truth.vowels]
['IH', 'AA', 'AO', 'IH', 'AY', 'AH', 'AO']
"""

from __future__ import annotations

import functools

import numpy as np

from emollm.audio import TARGET_SR, Audio
from emollm.errors import ConfigError

VOICES = ("Male1", "Male2", "Male3", "Female1", "Female2", "Female3")


@functools.lru_cache(maxsize=8)
def _synthesizer(voice: str):
    from parselmouth.praat import call

    return call("Create SpeechSynthesizer", "English (America)", voice)


def synthesize(
    text: str,
    *,
    pitch: float = 1.0,
    pitch_range: float = 1.0,
    words_per_minute: int = 175,
    voice: str = "Male1",
    sample_rate: int = TARGET_SR,
):
    """Synthesise ``text`` and return the audio and the synthesiser's own alignment.

    Args:
        text: English text.
        pitch: Praat's "pitch adjustment", 0.5-2.0 (1.5 measures as about +5.5 semitones, 2.0 as +9.5).
        pitch_range: Pitch range multiplier, 0.0 (monotone) to 2.0.
        words_per_minute: Speaking rate, 80-450.
        voice: One of :data:`VOICES`.
        sample_rate: Output sample rate in Hz.

    Returns:
        ``(Audio, Alignment)``: the speech and its word and phone intervals (``method == "textgrid"``).

    Raises:
        ConfigError: an argument is out of range or the text is empty.
    """
    from parselmouth.praat import call

    from emollm.prosody.align import alignment_from_tiers
    from emollm.prosody.textgrid import textgrid_tiers

    if not text or not text.strip():
        raise ConfigError("synthesize() needs non-empty text")
    if voice not in VOICES:
        raise ConfigError(f"unknown voice {voice!r}; choose one of {', '.join(VOICES)}")
    if not 0.5 <= pitch <= 2.0:
        raise ConfigError(f"pitch must be a multiplier in [0.5, 2.0], got {pitch}")
    if not 0.0 <= pitch_range <= 2.0:
        raise ConfigError(f"pitch_range must be in [0.0, 2.0], got {pitch_range}")
    if not 80 <= words_per_minute <= 450:
        raise ConfigError(f"words_per_minute must be in [80, 450], got {words_per_minute}")
    synth = _synthesizer(voice)
    call(synth, "Speech output settings", sample_rate, 0.01, pitch, pitch_range, words_per_minute, "IPA")
    grid, sound = call(synth, "To Sound", text, "yes")
    samples = np.asarray(sound.values[0], dtype=np.float32)
    peak = float(np.max(np.abs(samples))) or 1.0
    samples = samples / peak * 0.5 if peak > 0.5 else samples
    audio = Audio(samples=samples, sample_rate=int(sound.sampling_frequency), source=f"<synthesized: {text}>")
    tiers = textgrid_tiers(grid)
    alignment = alignment_from_tiers(
        tiers["word"], tiers["phoneme"], duration=audio.duration, transcript=text, strict=True
    )
    return audio, alignment
