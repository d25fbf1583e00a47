"""Training-time audio augmentation: speed perturbation, pitch shift and additive noise.

Augmentation is for the **train split only**: evaluation always sees the original recordings. Three
kinds, each named by a short spec string (see :data:`AUGMENTATIONS` and :func:`parse_augmentation`):

- ``speed0.9`` / ``speed1.1`` -- speed perturbation as in Kaldi and SpeechBrain (sox ``speed``): the clip is
  resampled so it plays ``factor`` times faster, changing tempo *and* pitch together (1.1 is 1/1.1 as long
  and 1.1 times as high).
- ``pitch+2`` / ``pitch-2`` -- F0 shifted by a number of semitones with Praat (``To Manipulation``, the pitch
  tier multiplied by the frequency ratio, ``Get resynthesis (overlap-add)``); the duration is kept.
- ``noise20`` -- white Gaussian noise at a signal-to-noise ratio of 20 dB, the signal's power measured over
  the whole clip.

:func:`augment_utterances` turns utterances into augmented copies. Each copy's waveform is computed once and
cached as a 16 kHz WAV under ``cache_dir() / "augment"``, named by a key over the source (the file's path,
size and modification time, or the bytes of an in-memory array), the augmentation and, for noise, its
seed; features (prosody, encoder frames) are then extracted from that file like from any other, and cached
by their own caches. Everything is deterministic: the noise of one copy is drawn from a seed derived with
:mod:`hashlib` from ``(seed, utterance id, augmentation)``, so the same seed gives the same copies on every
machine and in every process. A recipe records ``[a.name for a in augmentations]`` and the seed in its
checkpoint config.

**An augmented copy is a new voice.** Its speaker is ``f"{speaker}~{name}"``, so per-speaker normalisation
statistics are fitted over that copy-speaker's own clips, exactly as they are for a new test speaker. A pitch
shift applied to every clip of one speaker is therefore mostly normalised away by the speaker z-scores: what
augmentation adds is variation in the measurements (pitch tracking, vowel timing, noise in intensity and
voice quality) and robustness of the encoder inputs, not a speaker with a shifted pitch level.

**Level.** Every output is float32 within [-1, 1]. Where an augmentation would exceed full scale (noise on a
loud clip, resampling overshoot), the whole clip is scaled down to a peak of 0.99 instead of being clipped,
so the waveform's shape and the SNR stay exact.

>>> import numpy as np
>>> [a.name for a in parse_augmentations("speed0.9, speed1.1, pitch+2, noise20, speed0.90")]
['speed0.9', 'speed1.1', 'pitch+2', 'noise20']
>>> tone = 0.3 * np.sin(2 * np.pi * 150 * np.arange(16000) / 16000).astype(np.float32)
>>> len(apply_augmentation(tone, 16000, parse_augmentation("speed1.1")))  # 1 s played 1.1 times faster
14546
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emollm.data.schema import Utterance
from emollm.errors import AudioError, ConfigError

#: Accepted augmentation kinds and the syntax of their spec strings.
AUGMENTATIONS: dict[str, str] = {
    "speed": "speed<factor>, factor in [0.8, 1.2] but not 1 (speed0.9, speed1.1): tempo and pitch together",
    "pitch": "pitch<+/-semitones>, 0 < |semitones| <= 6 (pitch+2, pitch-2): F0 only, duration kept",
    "noise": "noise<snr_db>, SNR in [0, 60] dB (noise20): white Gaussian noise",
}
_RANGES = {"speed": (0.8, 1.2), "pitch": (-6.0, 6.0), "noise": (0.0, 60.0)}
_SPEC = re.compile(r"^(speed|pitch|noise)([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)$")
_PEAK = 0.99  # outputs louder than full scale are scaled down to this peak
_VERSION = "1"  # part of every cache key: bump it when an algorithm changes its output


def _accepted() -> str:
    return "; ".join(AUGMENTATIONS.values())


@dataclass(frozen=True)
class Augmentation:
    """One augmentation: a kind and its value.

    Attributes:
        kind: ``"speed"``, ``"pitch"`` or ``"noise"`` (the keys of :data:`AUGMENTATIONS`).
        value: Speed factor, semitones, or SNR in dB.

    Raises:
        ConfigError: an unknown kind or a value out of range.

    >>> Augmentation("pitch", -2.0).name, Augmentation("speed", 1.1).name
    ('pitch-2', 'speed1.1')
    """

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in AUGMENTATIONS:
            raise ConfigError(
                f"unknown augmentation kind {self.kind!r}; accepted: {', '.join(AUGMENTATIONS)}"
            )
        object.__setattr__(self, "value", float(self.value))
        low, high = _RANGES[self.kind]
        value = self.value
        bad = not (math.isfinite(value) and low <= value <= high)
        bad = bad or (self.kind == "speed" and value == 1.0) or (self.kind == "pitch" and value == 0.0)
        if bad:
            raise ConfigError(
                f"augmentation {self.kind} value {value:g} is out of range; {AUGMENTATIONS[self.kind]}"
            )

    @property
    def name(self) -> str:
        """The canonical spec string: ``speed0.9``, ``pitch+2``, ``pitch-2.5``, ``noise20``."""
        if self.kind == "pitch":
            return f"pitch{self.value:+g}"
        return f"{self.kind}{self.value:g}"


def parse_augmentation(text: str | Augmentation) -> Augmentation:
    """Parse one spec string such as ``speed0.9``, ``pitch+2`` or ``noise20`` (case and spaces ignored).

    Args:
        text: The spec; an :class:`Augmentation` is returned as is. An unsigned pitch is raised.

    Returns:
        The :class:`Augmentation`.

    Raises:
        ConfigError: naming the text seen and the accepted forms.

    >>> parse_augmentation(" Pitch2 ").name
    'pitch+2'
    >>> parse_augmentation("speed2")
    Traceback (most recent call last):
    ...
    emollm.errors.ConfigError: augmentation 'speed2': ...value 2 is out of range; speed<factor>, ...
    """
    if isinstance(text, Augmentation):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"an augmentation must be a string such as 'speed0.9', got {text!r}")
    match = _SPEC.match(text.strip().lower().replace(" ", ""))
    if match is None or (match.group(1) != "pitch" and match.group(2)[0] in "+-"):
        raise ConfigError(f"augmentation {text!r} is not understood; accepted: {_accepted()}")
    try:
        return Augmentation(match.group(1), float(match.group(2)))
    except ConfigError as exc:
        raise ConfigError(f"augmentation {text!r}: {exc}") from None


def parse_augmentations(text: str | Sequence[str | Augmentation] | None) -> list[Augmentation]:
    """Parse a comma-separated list (or a sequence) of spec strings, dropping repeats and keeping order.

    Args:
        text: ``"speed0.9,speed1.1,pitch+2,noise20"``, a list of specs, or ``None`` / ``""`` / ``"none"``
            for no augmentation.

    Returns:
        The augmentations, each once, in the order given.

    Raises:
        ConfigError: for any spec that :func:`parse_augmentation` refuses.

    >>> [a.name for a in parse_augmentations("noise20,pitch-2,noise20.0")]
    ['noise20', 'pitch-2']
    >>> parse_augmentations("none")
    []
    """
    if text is None:
        return []
    if isinstance(text, str):
        if text.strip().lower() in ("", "none"):
            return []
        text = [part for part in text.split(",") if part.strip()]
    result: list[Augmentation] = []
    for item in text:
        augmentation = parse_augmentation(item)
        if augmentation not in result:
            result.append(augmentation)
    return result


# -- signal functions --------------------------------------------------------------------------------------


def _as_mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise AudioError(
            f"augmentation needs a non-empty mono waveform of shape (num_samples,), got {audio.shape}"
        )
    if not np.all(np.isfinite(audio)):
        raise AudioError("augmentation needs finite samples; the waveform holds NaN or inf")
    return audio


def _fit_full_scale(audio: np.ndarray) -> np.ndarray:
    """float32, scaled down as a whole to a peak of :data:`_PEAK` if it would exceed [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio * np.float32(_PEAK / peak)
    return audio


def speed_perturb(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play ``audio`` ``factor`` times faster, tempo and pitch together (Kaldi / sox ``speed``).

    The samples are read as if recorded at ``sample_rate * factor`` and resampled (soxr) to ``sample_rate``.

    Args:
        audio: Mono float waveform, shape ``(num_samples,)``.
        sample_rate: Its sample rate in Hz (kept by the output).
        factor: Speed factor, e.g. 1.1 (1/1.1 as long, F0 times 1.1) or 0.9.

    Returns:
        float32 waveform of about ``num_samples / factor`` samples.

    >>> import numpy as np
    >>> len(speed_perturb(np.zeros(16000, dtype=np.float32), 16000, 0.9))  # 1 s slowed down
    17778
    """
    import librosa

    audio = _as_mono(audio)
    if not factor > 0:
        raise ConfigError(f"speed factor must be positive, got {factor}")
    out = librosa.resample(
        audio, orig_sr=sample_rate * float(factor), target_sr=sample_rate, res_type="soxr_hq"
    )
    return _fit_full_scale(out)


def pitch_shift(
    audio: np.ndarray,
    sample_rate: int,
    semitones: float,
    *,
    pitch_floor: float = 75.0,
    pitch_ceiling: float = 600.0,
) -> np.ndarray:
    """Shift F0 by ``semitones`` with Praat's PSOLA (Manipulation, overlap-add), keeping the duration.

    Unvoiced stretches are copied unchanged; a clip with no voiced frame comes back (nearly) unchanged.

    Args:
        audio: Mono float waveform, shape ``(num_samples,)``.
        sample_rate: Its sample rate in Hz.
        semitones: Shift, positive up, e.g. +2 multiplies F0 by ``2 ** (2 / 12)``.
        pitch_floor: Lowest F0 Praat looks for (Hz).
        pitch_ceiling: Highest F0 Praat looks for (Hz).

    Returns:
        float32 waveform with as many samples as ``audio``.

    >>> import numpy as np
    >>> t = np.arange(8000) / 16000
    >>> len(pitch_shift((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000, 2.0))
    8000
    """
    import parselmouth
    from parselmouth.praat import call

    audio = _as_mono(audio)
    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=float(sample_rate))
    manipulation = call(sound, "To Manipulation", 0.01, pitch_floor, pitch_ceiling)
    tier = call(manipulation, "Extract pitch tier")
    call(tier, "Multiply frequencies", sound.xmin, sound.xmax, 2.0 ** (semitones / 12.0))
    call([tier, manipulation], "Replace pitch tier")
    out = np.asarray(call(manipulation, "Get resynthesis (overlap-add)").values[0], dtype=np.float32)
    if len(out) != len(audio):  # Praat keeps the time domain; guard against an off-by-one all the same
        out = np.pad(out, (0, max(0, len(audio) - len(out))))[: len(audio)]
    return _fit_full_scale(out)


def add_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` dB below the clip's mean power.

    The drawn noise is scaled by its own measured power, so the SNR over the clip is exact, not only
    expected. If the sum would exceed full scale, the whole clip is scaled down (SNR unchanged).

    Args:
        audio: Mono float waveform, shape ``(num_samples,)``.
        snr_db: Signal-to-noise ratio in dB.
        seed: Seed of the noise (same seed, same noise).

    Returns:
        float32 waveform of the same length.

    Raises:
        AudioError: the clip is silent (no power to set an SNR against).

    >>> import numpy as np
    >>> clean = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    >>> noise = add_noise(clean, 20.0, seed=1) - clean
    >>> round(float(10 * np.log10(np.mean(clean**2) / np.mean(noise**2))), 2)
    20.0
    """
    audio = _as_mono(audio)
    signal_power = float(np.mean(audio.astype(np.float64) ** 2))
    if signal_power <= 0.0:
        raise AudioError("cannot add noise at a given SNR to a silent clip (its power is 0)")
    noise = np.random.default_rng(seed).standard_normal(len(audio))
    noise *= math.sqrt(signal_power / 10.0 ** (snr_db / 10.0) / float(np.mean(noise**2)))
    return _fit_full_scale(audio.astype(np.float64) + noise)


def apply_augmentation(
    audio: np.ndarray, sample_rate: int, augmentation: Augmentation | str, *, seed: int = 0
) -> np.ndarray:
    """Apply one augmentation to a waveform (``seed`` is used by noise only).

    >>> import numpy as np
    >>> clip = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    >>> apply_augmentation(clip, 16000, "noise20", seed=3).dtype
    dtype('float32')
    """
    augmentation = parse_augmentation(augmentation)
    if augmentation.kind == "speed":
        return speed_perturb(audio, sample_rate, augmentation.value)
    if augmentation.kind == "pitch":
        return pitch_shift(audio, sample_rate, augmentation.value)
    return add_noise(audio, augmentation.value, seed=seed)


# -- utterances --------------------------------------------------------------------------------------------


def noise_seed(seed: int, utterance_id: str, augmentation: Augmentation | str) -> int:
    """The seed of one copy's noise: a stable hash of ``(seed, utterance id, augmentation name)``.

    >>> noise_seed(0, "u1", "noise20") == noise_seed(0, "u1", "noise20.0") != noise_seed(1, "u1", "noise20")
    True
    """
    name = parse_augmentation(augmentation).name
    digest = hashlib.sha256(f"{int(seed)}\x00{utterance_id}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _source_key(utterance: Utterance) -> str:
    if utterance.audio is not None:
        digest = hashlib.sha256(np.ascontiguousarray(utterance.audio, dtype=np.float32).tobytes())
        return f"array:{utterance.sample_rate}:{digest.hexdigest()}"
    path = Path(utterance.audio_path).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise AudioError(
            f"utterance {utterance.id!r}: audio file {str(path)!r} cannot be read: {exc}"
        ) from None
    return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"


def cache_key(utterance: Utterance, augmentation: Augmentation | str, *, seed: int = 0) -> str:
    """The content key of one augmented copy: the source, the augmentation and (noise only) the seed.

    Speed and pitch ignore the seed, so changing it reuses their files. A source file is identified by its
    resolved path, size and modification time (no need to read it on a cache hit); an in-memory array by
    a hash of its samples.

    >>> from emollm.data.schema import Utterance
    >>> import numpy as np
    >>> u = Utterance(id="u1", audio=np.ones(4000), sample_rate=16000)
    >>> cache_key(u, "speed0.9", seed=0) == cache_key(u, "speed0.9", seed=7)
    True
    >>> cache_key(u, "noise20", seed=0) == cache_key(u, "noise20", seed=7)
    False
    """
    augmentation = parse_augmentation(augmentation)
    parts = [_VERSION, _source_key(utterance), augmentation.name]
    if augmentation.kind == "noise":
        parts.append(str(noise_seed(seed, utterance.id, augmentation)))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """Where augmented WAVs go by default: ``emollm.modeling.base.cache_dir() / "augment"``."""
    from emollm.modeling.base import cache_dir

    return cache_dir() / "augment"


def augment_utterances(
    utterances: Sequence[Utterance],
    augmentations: str | Sequence[str | Augmentation],
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> list[Utterance]:
    """Make one augmented copy of every utterance per augmentation, cached as WAV files.

    Use it on the train split only. Audio is loaded with :func:`emollm.audio.load_audio` (mono, 16 kHz),
    augmented, and written once, atomically, as ``<cache_dir>/<name>-<key>.wav`` (see :func:`cache_key`);
    a later call with the same source, augmentation and seed reuses the file.

    Args:
        utterances: The originals; they are not modified.
        augmentations: Spec strings or :class:`Augmentation` objects (a comma-separated string works too).
        seed: Seed of the noise; each copy draws from :func:`noise_seed` ``(seed, id, augmentation)``.
        cache_dir: Folder of the WAV files (default :func:`default_cache_dir`).

    Returns:
        Only the copies, utterance by utterance, augmentations in the order given. Each is the original with
        ``id`` and ``speaker`` suffixed ``~<name>`` (an unknown speaker stays None), ``audio_path`` the
        cached file, ``audio`` and ``sample_rate`` None, and ``meta`` extended with ``augmentation`` and
        ``source_id``; transcript, label and context are unchanged.

    Raises:
        ConfigError: a bad augmentation spec, or utterances without audio (all of their ids named).
        AudioError: audio that :func:`~emollm.audio.load_audio` refuses.

    >>> import tempfile
    >>> import numpy as np
    >>> folder = tempfile.TemporaryDirectory()
    >>> clip = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    >>> u = Utterance(id="u1", label="happy", audio=clip, sample_rate=16000, speaker="spk1")
    >>> copies = augment_utterances([u], "speed1.1,noise20", seed=0, cache_dir=folder.name)
    >>> [(c.id, c.speaker, c.meta["augmentation"]) for c in copies]
    [('u1~speed1.1', 'spk1~speed1.1', 'speed1.1'), ('u1~noise20', 'spk1~noise20', 'noise20')]
    >>> folder.cleanup()
    """
    from emollm.audio import Audio, load_audio, save_audio

    augmentations = parse_augmentations(augmentations)
    missing = [u.id for u in utterances if not u.has_audio]
    if missing:
        raise ConfigError(
            f"cannot augment utterances without audio (neither audio_path nor audio): {', '.join(missing)}"
        )
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    copies: list[Utterance] = []
    for utterance in utterances:
        loaded = None  # loaded on the first cache miss only
        for augmentation in augmentations:
            path = folder / f"{augmentation.name}-{cache_key(utterance, augmentation, seed=seed)}.wav"
            if not path.is_file():
                if loaded is None:
                    source = utterance.audio if utterance.audio is not None else utterance.audio_path
                    loaded = load_audio(source, utterance.sample_rate)
                samples = apply_augmentation(
                    loaded.samples,
                    loaded.sample_rate,
                    augmentation,
                    seed=noise_seed(seed, utterance.id, augmentation),
                )
                save_audio(Audio(samples=samples, sample_rate=loaded.sample_rate), path)
            copies.append(
                dataclasses.replace(
                    utterance,
                    id=f"{utterance.id}~{augmentation.name}",
                    audio_path=str(path),
                    audio=None,
                    sample_rate=None,
                    speaker=None if utterance.speaker is None else f"{utterance.speaker}~{augmentation.name}",
                    context=list(utterance.context),
                    label_distribution=None
                    if utterance.label_distribution is None
                    else dict(utterance.label_distribution),
                    meta={**utterance.meta, "augmentation": augmentation.name, "source_id": utterance.id},
                )
            )
    return copies
