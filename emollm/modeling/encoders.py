"""Frozen modality encoders: audio or face frames in, one ``(frames, output_dim)`` float32 tensor out.

The front half of the adapter route (modality encoder -> learnable projector -> K pseudo-tokens in the
LLM's ``inputs_embeds``). Encoders are never trained: their parameters do not require gradients and they
stay in eval mode, so their outputs can be computed once and cached on disk with :func:`encode_cached`.

- ``prosody_frames`` (:class:`ProsodyFrameEncoder`): Praat pitch and intensity plus librosa spectral
  features, 22 columns at 25 frames per second; no weights, fast on a CPU.
- ``hf_audio`` (:class:`HFAudioEncoder`): the frame outputs of a local wav2vec 2.0, HuBERT, WavLM or
  Whisper (encoder only) checkpoint.
- ``vision_frames`` (:class:`VisionFrameEncoder`): one pooled embedding per face frame from a local CLIP
  vision tower, ViT or other image model.

Every encoder has ``name`` (its key in :data:`ENCODERS`), ``output_dim``, ``settings()`` (JSON-ready
keyword arguments: ``build_encoder(enc.name, **enc.settings())`` rebuilds it) and ``encode(inputs)``.
Nothing is fetched from the network: model folders are read with ``local_files_only=True``.

>>> import numpy as np
>>> encoder = build_encoder("prosody_frames")
>>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
>>> features = encoder.encode([tone])
>>> tuple(features[0].shape)  # 1 s at 25 frames per second, 22 columns
(25, 22)
>>> batch, mask = pad_features(features + [features[0][:10]])
>>> tuple(batch.shape), mask.sum(dim=1).tolist()
((2, 25, 22), [25, 10])
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emollm.audio import TARGET_SR, Audio, load_audio
from emollm.errors import AudioError, ConfigError, DataError, ModelError

FEATURES_VERSION = 1
"""Part of every cache key of :func:`encode_cached`; bump it when an encoder's output changes."""

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


# -- prosody_frames ------------------------------------------------------------------------------------------

HOP = 160  # samples: the 10 ms analysis step at 16 kHz
N_FFT, WIN_LENGTH, N_MELS, N_MFCC = 512, 400, 40, 13
FEATURE_NAMES = (
    "f0_rel",
    "f0_level",
    "voiced",
    "intensity",
    "spectral_centroid",
    "spectral_flatness",
    "spectral_rolloff",
    "zero_crossing_rate",
    "rms",
    *(f"mfcc{i}" for i in range(N_MFCC)),
)
"""The columns of :class:`ProsodyFrameEncoder`'s output, in order (see its docstring)."""

FEATURE_SCALING = {
    "f0_rel": (0.0, 4.0),  # semitones re the utterance's voiced median
    "f0_level": (8.0, 6.0),  # semitones re 100 Hz; 8 st is about 160 Hz
    "voiced": (0.0, 1.0),
    "intensity": (60.0, 15.0),  # Praat dB (re 2e-5 Pa; a full-scale sine is about 91 dB)
    "spectral_centroid": (2000.0, 1500.0),  # Hz
    "spectral_flatness": (-2.0, 1.0),  # log10 of the flatness (0-1)
    "spectral_rolloff": (3000.0, 2000.0),  # Hz below which 85 % of the energy lies
    "zero_crossing_rate": (0.15, 0.15),  # crossings per sample
    "rms": (-40.0, 15.0),  # dBFS, 20 * log10(rms + 1e-5)
    "mfcc0": (-250.0, 100.0),
    **{f"mfcc{i}": (0.0, 30.0) for i in range(1, N_MFCC)},
}
"""``name -> (centre, scale)``: each column is ``clip((raw - centre) / scale, -5, 5)``; fixed, not fitted."""

FEATURE_CLIP = 5.0
F0_COLUMNS = 2  # f0_rel and f0_level are averaged over voiced frames only


def _as_audio(item) -> Audio:
    """A path, a 16 kHz array or tensor, or an :class:`Audio` -> validated 16 kHz :class:`Audio`."""
    if isinstance(item, Audio):
        if item.sample_rate == TARGET_SR:
            return item
        return load_audio(item.samples, sample_rate=item.sample_rate)
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        return load_audio(item, sample_rate=TARGET_SR)
    if isinstance(item, (str, Path)):
        return load_audio(item)
    raise ConfigError(
        f"audio encoders take a file path, a 1-D array of 16 kHz samples or an emollm.audio.Audio, "
        f"got {type(item).__name__}"
    )


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=TARGET_SR, n_fft=N_FFT, n_mels=N_MELS)


def _frame_count(num_samples: int) -> int:
    return max(1, num_samples // HOP)


def _pool(frames: np.ndarray, frame_rate: float) -> np.ndarray:
    """Average 10 ms frames into ``frame_rate`` frames per second; F0 columns over voiced frames only."""
    index = np.floor(np.arange(len(frames)) * frame_rate / 100.0 + 1e-9).astype(int)
    count = int(index[-1]) + 1
    sums = np.zeros((count, frames.shape[1]))
    np.add.at(sums, index, frames)
    sizes = np.bincount(index, minlength=count)[:, None]
    pooled = sums / sizes
    voiced = frames[:, 2:3]
    f0_sums = np.zeros((count, F0_COLUMNS))
    np.add.at(f0_sums, index, frames[:, :F0_COLUMNS] * voiced)
    voiced_counts = np.bincount(index, weights=voiced[:, 0], minlength=count)[:, None]
    pooled[:, :F0_COLUMNS] = f0_sums / np.maximum(voiced_counts, 1.0)
    return pooled


class ProsodyFrameEncoder(torch.nn.Module):
    """Frame-level prosodic and spectral features, scaled with fixed constants; no weights.

    Every 10 ms (frame ``k`` centred at ``k * 10`` ms) it measures, then average-pools to ``frame_rate``
    frames per second and scales each column as ``clip((raw - centre) / scale, -5, 5)`` with the constants
    of :data:`FEATURE_SCALING` (no dataset statistics). The 22 columns (:data:`FEATURE_NAMES`):

    - ``f0_rel``: F0 in semitones relative to the utterance's median voiced F0, / 4.
    - ``f0_level``: absolute F0 level, ``(12 * log2(F0 / 100 Hz) - 8) / 6`` (0 is about 160 Hz).
    - ``voiced``: 1 for a voiced 10 ms frame, 0 otherwise; after pooling, the voiced share of the frame.
    - ``intensity``: Praat intensity, ``(dB - 60) / 15``; undefined (zero-energy) frames count as 0 dB.
    - ``spectral_centroid``: ``(Hz - 2000) / 1500``.
    - ``spectral_flatness``: ``log10(flatness) + 2``.
    - ``spectral_rolloff``: 85 % roll-off frequency, ``(Hz - 3000) / 2000``.
    - ``zero_crossing_rate``: ``(rate - 0.15) / 0.15``.
    - ``rms``: ``(20 * log10(rms + 1e-5) + 40) / 15``.
    - ``mfcc0`` ... ``mfcc12``: MFCCs of a 40-band log-mel spectrogram; ``(c0 + 250) / 100``, others ``/ 30``.

    F0 comes from Praat's autocorrelation pitch with the speaker-adaptive floor and ceiling of
    :func:`emollm.prosody.measure.pitch_range_for`. Unvoiced frames (Praat's 0 Hz) have ``voiced = 0`` and
    both F0 columns 0; the F0 columns of a pooled frame average its voiced 10 ms frames only. Every value is
    finite. Spectra use a 25 ms Hann window (512-point FFT). About 15-30 ms per 3 s clip on one CPU core.

    Args:
        frame_rate: Output frames per second (0 < rate <= 100); 25 gives 40 ms frames (wav2vec 2.0: 20 ms).
        pitch_floor: Lowest F0 searched, Hz; None estimates it per utterance.
        pitch_ceiling: Highest F0 searched, Hz; None estimates it per utterance.

    Raises:
        ConfigError: a setting is out of range.

    >>> import numpy as np
    >>> encoder = ProsodyFrameEncoder(frame_rate=10)
    >>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000)
    >>> out = encoder.encode([tone])[0]
    >>> tuple(out.shape), FEATURE_NAMES[1], round(float(out[10, 1]), 2)  # (12 * log2(2) - 8) / 6
    ((20, 22), 'f0_level', 0.67)
    """

    name = "prosody_frames"
    feature_names = FEATURE_NAMES

    def __init__(
        self, frame_rate: float = 25.0, pitch_floor: float | None = None, pitch_ceiling: float | None = None
    ):
        super().__init__()
        from emollm.prosody.measure import MeasureConfig

        if (
            isinstance(frame_rate, bool)
            or not isinstance(frame_rate, (int, float))
            or not 0 < frame_rate <= 100
        ):
            raise ConfigError(
                f"frame_rate must be a number in (0, 100] frames per second, got {frame_rate!r}"
            )
        self.frame_rate = float(frame_rate)
        self.pitch_floor = pitch_floor
        self.pitch_ceiling = pitch_ceiling
        self._measure_config = MeasureConfig(pitch_floor=pitch_floor, pitch_ceiling=pitch_ceiling)
        self.output_dim = len(FEATURE_NAMES)
        centre, scale = zip(*(FEATURE_SCALING[n] for n in FEATURE_NAMES))
        self._centres, self._scales = np.array(centre), np.array(scale)
        self.eval()

    def train(self, mode: bool = True) -> ProsodyFrameEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this encoder with :func:`build_encoder`."""
        return {
            "frame_rate": self.frame_rate,
            "pitch_floor": self.pitch_floor,
            "pitch_ceiling": self.pitch_ceiling,
        }

    def _praat(self, audio: Audio, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F0 (Hz, NaN when unvoiced) and intensity (dB) at ``times``."""
        import parselmouth

        from emollm.prosody.measure import pitch_range_for

        floor, ceiling = pitch_range_for(audio, self._measure_config)
        try:
            sound = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=float(TARGET_SR))
            pitch = sound.to_pitch_ac(time_step=HOP / TARGET_SR, pitch_floor=floor, pitch_ceiling=ceiling)
            intensity = sound.to_intensity(minimum_pitch=floor, time_step=HOP / TARGET_SR)
        except parselmouth.PraatError as exc:
            raise AudioError(
                f"Praat could not analyse audio {audio.source} ({audio.duration:.3f} s): "
                f"{' '.join(str(exc).split())}"
            ) from exc
        f0 = np.full(len(times), np.nan)
        hz = pitch.selected_array["frequency"]
        if len(hz):
            index = np.rint((times - pitch.x1) / pitch.dx).astype(int)
            inside = (index >= 0) & (index < len(hz))
            f0[inside] = hz[index[inside]]
        f0[~(f0 > 0) | ~np.isfinite(f0)] = np.nan  # Praat's 0 Hz is "unvoiced"
        db = np.array(intensity.values[0], dtype=float)
        db = np.clip(np.where(np.isfinite(db), db, 0.0), 0.0, 120.0)  # -300 dB (zero energy) -> 0 dB
        db = np.interp(times, intensity.xs(), db) if len(db) else np.zeros(len(times))
        return f0, db

    def _spectral(self, samples: np.ndarray, count: int) -> np.ndarray:
        import librosa

        spec = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP, win_length=WIN_LENGTH, center=True))
        spec = spec[:, :count]
        power = spec**2
        centroid = librosa.feature.spectral_centroid(S=spec, sr=TARGET_SR)[0]
        flatness = np.log10(np.maximum(librosa.feature.spectral_flatness(S=spec)[0], 1e-6))
        rolloff = librosa.feature.spectral_rolloff(S=spec, sr=TARGET_SR, roll_percent=0.85)[0]
        rms_db = 20 * np.log10(librosa.feature.rms(S=spec, frame_length=N_FFT)[0] + 1e-5)
        padded = np.pad(samples, WIN_LENGTH // 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, WIN_LENGTH)[::HOP][:count]
        zcr = np.mean(np.abs(np.diff(np.signbit(windows), axis=1)), axis=1)
        # einsum, not a BLAS matmul: a multithreaded BLAS stalls for milliseconds on a busy machine
        mel = np.einsum("mf,ft->mt", _mel_basis(), power)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
        return np.column_stack([centroid, flatness, rolloff, zcr, rms_db, mfcc.T])

    def features_10ms(self, audio) -> np.ndarray:
        """Unscaled 10 ms features, ``(frames, 22)`` (F0 columns in semitones, NaN-free), for inspection."""
        audio = _as_audio(audio)
        count = _frame_count(len(audio.samples))
        times = np.arange(count) * HOP / TARGET_SR
        f0, db = self._praat(audio, times)
        voiced = np.isfinite(f0)
        semitones = np.zeros(count)
        semitones[voiced] = 12 * np.log2(f0[voiced] / 100.0)
        relative = np.zeros(count)
        if voiced.any():
            relative[voiced] = semitones[voiced] - np.median(semitones[voiced])
        spectral = self._spectral(audio.samples, count)
        raw = np.column_stack([relative, semitones, voiced.astype(float), db, spectral])
        return np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        scaled = (raw - self._centres) / self._scales
        voiced = raw[:, 2:3] > 0
        scaled[:, :F0_COLUMNS] = np.where(voiced, scaled[:, :F0_COLUMNS], 0.0)  # unvoiced F0 is 0, scaled too
        return np.clip(scaled, -FEATURE_CLIP, FEATURE_CLIP)

    @torch.no_grad()
    def encode(self, inputs: Sequence) -> list[torch.Tensor]:
        """One float32 ``(frames, 22)`` tensor per input (paths, 16 kHz arrays or :class:`Audio`).

        Raises:
            AudioError: an input cannot be loaded (see :func:`emollm.audio.load_audio`) or analysed.
        """
        out = []
        for item in _as_list(inputs):
            pooled = _pool(self._scale(self.features_10ms(item)), self.frame_rate)
            out.append(torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32)))
        return out


# -- Hugging Face models -------------------------------------------------------------------------------------


def _as_list(inputs) -> list:
    if isinstance(inputs, (str, Path, np.ndarray, torch.Tensor, Audio)) or not isinstance(inputs, Sequence):
        raise ConfigError(
            f"encode() takes a sequence of inputs (a list, one per utterance), got {type(inputs).__name__}"
        )
    return list(inputs)


def _model_folder(path, kind: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"{kind} needs a local folder with config.json (a model saved with save_pretrained), got "
            f"{str(path)!r}; nothing is downloaded, so fetch hub models beforehand (huggingface-cli download)"
        )
    return folder.resolve()


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _load_pretrained(loader, folder: Path, **kwargs):
    try:
        return loader.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"could not load {loader.__name__} from {str(folder)!r}: {exc}") from exc


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class HFAudioEncoder(torch.nn.Module):
    """Frame outputs of a local Hugging Face speech model: wav2vec 2.0, HuBERT, WavLM or Whisper's encoder.

    The model comes from ``AutoModel`` and its feature extractor from ``AutoFeatureExtractor``; an
    encoder-decoder (Whisper) keeps its encoder only. The output is ``hidden_states[layer]`` of one
    utterance at a time (no padding, so batch composition never changes a result), trimmed to the model's
    own output length (``_get_feat_extract_output_lengths``). Whisper pads every input to 30 s: its output
    is cut to the frames that cover the real audio (20 ms each), and audio longer than 30 s is encoded in
    30 s windows and concatenated. Move the encoder with ``.to("cuda")`` to run it on a GPU; outputs
    always come back as float32 CPU tensors.

    Args:
        path: A local folder with ``config.json``, the weights and ``preprocessor_config.json``.
        layer: Which hidden state: 0 is the input embeddings, -1 (default) the last layer.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` weights.

    Raises:
        ConfigError: no ``config.json`` at ``path``, or ``layer``/``dtype`` out of range.
        ModelError: the folder does not load.

    >>> encoder = HFAudioEncoder("models/wav2vec2-base", layer=6)  # doctest: +SKIP
    >>> encoder.encode(["clip.wav"])[0].shape  # doctest: +SKIP
    torch.Size([149, 768])
    """

    name = "hf_audio"

    def __init__(self, path: str | Path, layer: int = -1, dtype: str = "float32"):
        super().__init__()
        self.path = _model_folder(path, "hf_audio")
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        self.dtype_name, self.layer = dtype, layer
        config = _load_pretrained(AutoConfig, self.path)
        model = _load_pretrained(AutoModel, self.path, dtype=_torch_dtype(dtype))
        self.extractor = _load_pretrained(AutoFeatureExtractor, self.path)
        self.is_whisper = config.model_type == "whisper"
        self.model = model.get_encoder() if getattr(config, "is_encoder_decoder", False) else model
        # from the kept module: a bound method of the full Whisper model would keep its decoder alive
        self._output_lengths = (
            None if self.is_whisper else getattr(self.model, "_get_feat_extract_output_lengths", None)
        )
        self.output_dim = int(getattr(config, "hidden_size", None) or config.d_model)
        layers = int(config.num_hidden_layers)
        if isinstance(layer, bool) or not isinstance(layer, int) or not -(layers + 1) <= layer <= layers:
            raise ConfigError(
                f"layer must be an integer in [{-(layers + 1)}, {layers}] for this {layers}-layer model, "
                f"got {layer!r}"
            )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> HFAudioEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this encoder with :func:`build_encoder`."""
        return {"path": str(self.path), "layer": self.layer, "dtype": self.dtype_name}

    def _forward(self, samples: np.ndarray) -> torch.Tensor:
        inputs = self.extractor(samples, sampling_rate=TARGET_SR, return_tensors="pt")
        device, dtype = _device(self.model), next(self.model.parameters()).dtype
        inputs = {
            k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()
        }
        return self.model(**inputs, output_hidden_states=True).hidden_states[self.layer][0]

    def _whisper(self, samples: np.ndarray) -> torch.Tensor:
        window = int(self.extractor.n_samples)
        stride = self.model.conv1.stride[0] * self.model.conv2.stride[0]
        pieces = []
        for start in range(0, len(samples), window):
            chunk = samples[start : start + window]
            hidden = self._forward(chunk)
            pieces.append(hidden[: math.ceil(len(chunk) / (self.extractor.hop_length * stride))])
        return torch.cat(pieces)

    @torch.no_grad()
    def encode(self, inputs: Sequence) -> list[torch.Tensor]:
        """One float32 ``(frames, output_dim)`` tensor per input (paths, 16 kHz arrays or :class:`Audio`).

        Raises:
            AudioError: an input cannot be loaded (see :func:`emollm.audio.load_audio`).
        """
        out = []
        for item in _as_list(inputs):
            samples = _as_audio(item).samples
            if self.is_whisper:
                hidden = self._whisper(samples)
            else:
                hidden = self._forward(samples)
                if self._output_lengths is not None:
                    hidden = hidden[: int(self._output_lengths(torch.tensor(len(samples))))]
            out.append(hidden.float().cpu().contiguous())
        return out


# -- vision_frames -------------------------------------------------------------------------------------------

VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
"""Model types whose folder may hold a two-tower model; only the vision tower is loaded."""
NO_POOLER = ("vit", "deit")  # their tanh pooler is often untrained (e.g. DINO): use the CLS token instead


def sample_indices(count: int, num: int) -> list[int]:
    """``num`` indices spread uniformly over ``range(count)`` (the centres of ``num`` equal spans).

    All of them when ``count <= num``.

    >>> sample_indices(12, 4), sample_indices(3, 8)
    ([1, 4, 7, 10], [0, 1, 2])
    """
    if count <= num:
        return list(range(count))
    return [int((i + 0.5) * count / num) for i in range(num)]


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
    )


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"could not read image {str(path)!r}: {exc}") from exc


def _to_image(frame):
    from PIL import Image

    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    if isinstance(frame, (str, Path)):
        return _open_image(Path(frame))
    array = np.asarray(frame)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (1, 3, 4))
    ):
        raise DataError(
            f"a frame must be a PIL image or an HxWx3 uint8 array, got an array of shape {array.shape} and "
            f"dtype {array.dtype}"
        )
    return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[2] == 1 else array).convert(
        "RGB"
    )


def read_video_frames(path: str | Path, num_frames: int) -> list:
    """``num_frames`` RGB PIL frames spread uniformly over a video file, decoded with PyAV.

    Raises:
        ConfigError: PyAV is not installed.
        DataError: the file cannot be decoded or has no video stream.

    >>> frames = read_video_frames("clip.mp4", 8)  # doctest: +SKIP
    """
    try:
        import av
    except ImportError as exc:
        raise ConfigError(
            f"reading the video {str(path)!r} needs PyAV: pip install av (or pass a folder of frame images "
            f"or a list of frames instead)"
        ) from exc

    def frames_of(container):
        if not container.streams.video:
            raise DataError(f"{str(path)!r} has no video stream")
        return container.decode(container.streams.video[0])

    try:
        with av.open(str(path)) as container:
            count = int(container.streams.video[0].frames) if container.streams.video else 0
            if count <= 0:  # the header does not say: count by decoding
                count = sum(1 for _ in frames_of(container))
        wanted = set(sample_indices(count, num_frames))
        images = []
        with av.open(str(path)) as container:
            for i, frame in enumerate(frames_of(container)):
                if i in wanted:
                    images.append(frame.to_image())
                if len(images) == len(wanted):
                    break
    except av.error.FFmpegError as exc:
        raise DataError(f"could not decode video {str(path)!r}: {exc}") from exc
    if not images:
        raise DataError(f"video {str(path)!r} has no frames")
    return images


class VisionFrameEncoder(torch.nn.Module):
    """One pooled embedding per face frame from a local image model: ``(frames, hidden)``.

    CLIP (and SigLIP) folders load only their vision tower (``CLIPVisionModel``), even from a full two-tower
    checkpoint, and give its ``pooler_output`` (the normalised CLS token). ViT and DeiT load without their
    tanh pooler (often untrained) and give the CLS token of the last hidden state; any other ``AutoModel``
    gives ``pooler_output`` when it has one, else its first token. Images go through the folder's
    ``AutoImageProcessor``.

    Inputs, each sampled uniformly down to ``num_frames`` frames (shorter ones keep all their frames):

    - a folder of images (``.jpg``, ``.png`` ...), in natural name order (``frame2`` before ``frame10``);
    - a list of PIL images, HxWx3 uint8 arrays or image paths; or one ``(frames, H, W, 3)`` uint8 array;
    - a video file, decoded with PyAV (``pip install av``); or a single image file.

    Args:
        path: A local folder with ``config.json``, weights and ``preprocessor_config.json``.
        num_frames: At most this many frames per input (1-256).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` weights.

    Raises:
        ConfigError: no ``config.json`` at ``path``, or a setting out of range.
        ModelError: the folder does not load.

    >>> encoder = VisionFrameEncoder("models/clip-vit-base-patch32", num_frames=8)  # doctest: +SKIP
    >>> encoder.encode(["faces/utt1/"])[0].shape  # doctest: +SKIP
    torch.Size([8, 768])
    """

    name = "vision_frames"

    def __init__(self, path: str | Path, num_frames: int = 8, dtype: str = "float32"):
        super().__init__()
        self.path = _model_folder(path, "vision_frames")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= 256:
            raise ConfigError(f"num_frames must be an integer in [1, 256], got {num_frames!r}")
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        self.num_frames, self.dtype_name = num_frames, dtype
        torch_dtype = _torch_dtype(dtype)
        config = _load_pretrained(AutoConfig, self.path)
        if config.model_type in VISION_TOWERS:
            self.model = _load_pretrained(
                getattr(transformers, VISION_TOWERS[config.model_type]), self.path, dtype=torch_dtype
            )
        elif config.model_type in NO_POOLER:
            self.model = _load_pretrained(AutoModel, self.path, dtype=torch_dtype, add_pooling_layer=False)
        else:
            self.model = _load_pretrained(AutoModel, self.path, dtype=torch_dtype)
        self.processor = _load_pretrained(AutoImageProcessor, self.path)
        model_config = self.model.config
        hidden = (
            getattr(model_config, "hidden_size", None) or getattr(model_config, "hidden_sizes", [None])[-1]
        )
        if hidden is None:
            raise ModelError(f"cannot tell the embedding size of the model in {str(self.path)!r}")
        self.output_dim = int(hidden)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VisionFrameEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this encoder with :func:`build_encoder`."""
        return {"path": str(self.path), "num_frames": self.num_frames, "dtype": self.dtype_name}

    def frames(self, item) -> list:
        """The sampled RGB PIL frames of one input (see the class docstring for what an input may be).

        Raises:
            DataError: a missing path, a folder without images, an unreadable image or video.
            ConfigError: a video file without PyAV installed.
        """
        if isinstance(item, (str, Path)):
            path = Path(item).expanduser()
            if path.is_dir():
                files = _image_files(path)
                if not files:
                    raise DataError(f"folder {str(path)!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
                return [_open_image(files[i]) for i in sample_indices(len(files), self.num_frames)]
            if not path.is_file():
                raise DataError(f"{str(path)!r} is neither a folder of images nor a video or image file")
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return [_open_image(path)]
            return read_video_frames(path, self.num_frames)
        if isinstance(item, np.ndarray) and item.ndim == 4:
            item = list(item)
        if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or not item:
            raise DataError(
                f"a vision input must be a folder, a video, or a non-empty list of frames, got "
                f"{type(item).__name__}"
            )
        return [_to_image(item[i]) for i in sample_indices(len(item), self.num_frames)]

    @torch.no_grad()
    def encode(self, inputs: Sequence) -> list[torch.Tensor]:
        """One float32 ``(frames, output_dim)`` tensor per input, frames sampled to at most ``num_frames``."""
        out = []
        device, dtype = _device(self.model), next(self.model.parameters()).dtype
        for item in _as_list(inputs):
            pixels = self.processor(images=self.frames(item), return_tensors="pt")["pixel_values"]
            result = self.model(pixel_values=pixels.to(device, dtype))
            pooled = getattr(result, "pooler_output", None)
            if pooled is None or pooled.ndim != 2:
                pooled = result.last_hidden_state[:, 0]
            out.append(pooled.float().cpu().contiguous())
        return out


# -- registry, padding and caching ---------------------------------------------------------------------------

ENCODERS = {
    "prosody_frames": ProsodyFrameEncoder,
    "hf_audio": HFAudioEncoder,
    "vision_frames": VisionFrameEncoder,
}
"""Encoder name -> class; :func:`build_encoder` looks names up here."""


def build_encoder(name: str, **kwargs) -> torch.nn.Module:
    """The frozen encoder registered as ``name``, built with ``kwargs``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or bad settings.

    >>> build_encoder("prosody_frames", frame_rate=50).settings()["frame_rate"]
    50.0
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODERS)}")
    try:
        return ENCODERS[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad settings for encoder {name!r}: {exc}") from exc


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, D)`` feature tensors into a zero-padded ``(B, T_max, D)`` batch and its mask.

    A zero-length input (``(0, D)``) gets no real frame: its row is all zeros with an all-False mask, and
    ``T_max`` is at least 1 so the batch is never empty along time (the projectors treat such a row as one
    zero frame).

    Returns:
        ``(batch, mask)``: ``batch`` in the inputs' dtype, ``mask`` a ``(B, T_max)`` bool tensor, True on
        real frames.

    Raises:
        ConfigError: no features, a tensor that is not 2-D, or differing feature sizes.

    >>> batch, mask = pad_features([torch.ones(3, 2), torch.ones(0, 2)])
    >>> tuple(batch.shape), mask.tolist()
    ((2, 3, 2), [[True, True, True], [False, False, False]])
    """
    tensors = [torch.as_tensor(f) for f in features]
    if not tensors:
        raise ConfigError("pad_features needs at least one feature tensor, got none")
    bad = [tuple(t.shape) for t in tensors if t.ndim != 2]
    sizes = {int(t.shape[1]) for t in tensors if t.ndim == 2}
    if bad or len(sizes) != 1:
        raise ConfigError(
            f"pad_features needs 2-D (frames, dim) tensors of one feature size, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    lengths = [int(t.shape[0]) for t in tensors]
    batch = torch.zeros(len(tensors), max(1, *lengths), sizes.pop(), dtype=tensors[0].dtype)
    mask = torch.zeros(batch.shape[:2], dtype=torch.bool)
    for row, (tensor, length) in enumerate(zip(tensors, lengths)):
        batch[row, :length] = tensor
        mask[row, :length] = True
    return batch, mask


def _hash_path(path: Path, digest) -> None:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            _hash_path(file, digest)
        return
    if not path.is_file():
        raise DataError(f"input {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _hash_content(item, digest) -> None:
    from PIL import Image

    if isinstance(item, (str, Path)):
        _hash_path(Path(item).expanduser(), digest)
    elif isinstance(item, Audio):
        digest.update(f"audio:{item.sample_rate}".encode())
        digest.update(np.ascontiguousarray(item.samples).tobytes())
    elif isinstance(item, Image.Image):
        digest.update(f"image:{item.mode}:{item.size}".encode())
        digest.update(item.tobytes())
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        array = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
        digest.update(f"array:{array.dtype}:{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    elif isinstance(item, Sequence):
        digest.update(f"list:{len(item)}".encode())
        for part in item:
            _hash_content(part, digest)
    else:
        raise ConfigError(f"cannot hash an input of type {type(item).__name__} for the cache; pass keys=")


def cache_key(encoder, item=None, key: str | None = None) -> str:
    """SHA-256 of an input's content (or of ``key``), the encoder's name and settings, and the version.

    >>> len(cache_key(build_encoder("prosody_frames"), key="utt-001"))
    64
    """
    digest = hashlib.sha256()
    if key is not None:
        digest.update(f"key:{key}".encode())
    else:
        _hash_content(item, digest)
    setup = {"encoder": encoder.name, "settings": encoder.settings(), "version": FEATURES_VERSION}
    digest.update(json.dumps(setup, sort_keys=True).encode())
    return digest.hexdigest()


def _load_cached(path: Path, encoder) -> torch.Tensor | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensor = load_file(str(path))["features"]
    except (SafetensorError, OSError, KeyError):  # unreadable: encode again and overwrite
        return None
    return tensor if tensor.ndim == 2 and tensor.shape[1] == encoder.output_dim else None


def encode_cached(
    encoder,
    inputs: Sequence,
    cache_dir: str | Path | None = None,
    keys: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> list[torch.Tensor]:
    """``encoder.encode(inputs)``, with one safetensors file per input under ``cache_dir`` reused on reruns.

    An input's file is ``cache_dir/<encoder name>/<key>.safetensors``, ``key`` being :func:`cache_key`:
    a hash of the input's content (file, folder, array or image bytes, not its path), the encoder's name
    and ``settings()``, and :data:`FEATURES_VERSION`. Changing any of them misses the cache. Inputs are
    encoded one at a time and each file is written atomically (temporary file, then ``os.replace``), so an
    interrupted run keeps what it finished and never leaves half a file. A model folder is identified by
    its path: after replacing the weights at the same path, clear the cache.

    Args:
        encoder: An encoder from :func:`build_encoder`.
        inputs: What ``encoder.encode`` accepts.
        cache_dir: Cache folder; None encodes without caching.
        keys: One string per input used instead of hashing its content (e.g. utterance ids, when hashing
            large videos is slow); they must be unique per content.
        progress: Show a tqdm progress bar.

    Returns:
        One float32 ``(frames, output_dim)`` tensor per input.

    Raises:
        ConfigError: ``keys`` does not match ``inputs`` in length.

    >>> import numpy as np, tempfile
    >>> tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
    >>> encoder, cache = build_encoder("prosody_frames"), tempfile.mkdtemp()
    >>> first = encode_cached(encoder, [tone], cache)
    >>> bool(torch.equal(first[0], encode_cached(encoder, [tone], cache)[0]))
    True
    """
    from tqdm.auto import tqdm

    from emollm.io import atomic_path

    items = _as_list(inputs)
    if keys is not None and len(keys) != len(items):
        raise ConfigError(f"got {len(keys)} keys for {len(items)} inputs; give one key per input")
    if cache_dir is None:
        return encoder.encode(items)
    from safetensors.torch import save_file

    folder = Path(cache_dir).expanduser() / encoder.name
    metadata = {
        "encoder": encoder.name,
        "settings": json.dumps(encoder.settings()),
        "version": str(FEATURES_VERSION),
    }
    out = []
    for i, item in enumerate(
        tqdm(items, disable=not progress, desc=f"encoding ({encoder.name})", unit="input")
    ):
        path = folder / f"{cache_key(encoder, item, None if keys is None else str(keys[i]))}.safetensors"
        features = _load_cached(path, encoder)
        if features is None:
            features = encoder.encode([item])[0]
            with atomic_path(path) as tmp:
                save_file({"features": features.contiguous()}, str(tmp), metadata=metadata)
        out.append(features)
    return out
