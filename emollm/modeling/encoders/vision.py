"""``vision_frames``: one pooled embedding per face frame from a local CLIP/SigLIP vision tower or ViT."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emollm.errors import ConfigError, DataError, ModelError
from emollm.modeling.encoders.common import _as_list, _device, _load_pretrained, _model_folder, _torch_dtype

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

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
