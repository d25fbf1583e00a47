"""``hf_audio``: the frame outputs of a local wav2vec 2.0, HuBERT, WavLM or Whisper encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emollm.audio import TARGET_SR
from emollm.errors import ConfigError
from emollm.modeling.encoders.common import (
    _as_audio,
    _as_list,
    _device,
    _load_pretrained,
    _model_folder,
    _torch_dtype,
)


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
