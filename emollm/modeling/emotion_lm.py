"""``EmotionLM``: a causal LM, its tokenizer and, optionally, modality adapters, with two decoding modes.

- :meth:`EmotionLM.score`: no generation; the log-probability of every label after each prompt, from one
  batched pass over the prompts whose KV cache is reused for the labels
  (:func:`emollm.modeling.lm.score_labels`). Softmax over the labels gives a full distribution.
- :meth:`EmotionLM.generate`: batched greedy or sampled generation (left padding, stop at EOS).

Adapters (the pseudo-token route) are built by :mod:`emollm.modeling.adapters`: per adapter a frozen encoder
and a learnable projector whose K vectors replace the placeholder (``<|audio|>``) in the prompt's embeddings;
a modality with several adapters gets K1 + K2 + ... vectors at its placeholder.
:func:`load_checkpoint` rebuilds an ``EmotionLM`` from the files :mod:`emollm.modeling.checkpoint` reads.

The prompt side (templates, context, prosody) lives in :mod:`emollm.prompting`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from emollm.errors import ConfigError, ModelError
from emollm.labels import LabelSet, get_label_set
from emollm.modeling.adapters import (
    AdapterSpec,
    attach_projectors,
    build_adapters,
    get_projectors,
    pooled_text_embeds,
    project_frames,
)
from emollm.modeling.base import DEFAULT_MODEL, load_base_model, prepare_tokenizer
from emollm.modeling.checkpoint import is_checkpoint, load_projector_weights, read_checkpoint_config
from emollm.modeling.injection import PLACEHOLDERS, PSEUDO_TOKEN_ID, tokenize_with_placeholders
from emollm.modeling.lm import generate, score_labels
from emollm.prompting import prompt_adds_special_tokens, prompt_token_ids

__all__ = ["EmotionLM", "load_checkpoint"]


class EmotionLM:
    """A causal LM that scores labels and generates rationales, optionally hearing audio as pseudo-tokens.

    Args:
        model: A ``transformers`` causal LM (any architecture ``AutoModelForCausalLM`` loads), possibly with
            a PEFT adapter.
        tokenizer: Its tokenizer; a pad token (EOS) and left padding are set if missing.
        name: What to call the model in reports (its name or path).
        encoders: adapter key -> frozen encoder, for :meth:`encode` (the key is the modality, or the
            adapter's name when a modality has several; see :attr:`adapter_modalities`).
        projectors: adapter key -> projector (a ``ModuleDict``, in slot order); registered on the model.
        adapters: The :class:`AdapterSpec` list the encoders and projectors were built from (saved with
            checkpoints).
        frame_normalizers: adapter key -> :class:`~emollm.modeling.frame_norm.FrameNormalizer` for adapters
            with ``normalize="speaker"`` (checkpoints restore the training set's; see
            :meth:`fit_frame_normalizers`).
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str = "model",
        *,
        encoders: Mapping | None = None,
        projectors: torch.nn.ModuleDict | None = None,
        adapters: Sequence[AdapterSpec] = (),
        frame_normalizers: Mapping | None = None,
    ):
        prepare_tokenizer(tokenizer)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.encoders = dict(encoders or {})
        self.adapters = list(adapters)
        self.frame_normalizers = dict(frame_normalizers or {})
        if projectors is not None:
            attach_projectors(model, projectors)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        *,
        dtype=None,
        device: str | None = None,
        adapters: Sequence[AdapterSpec | Mapping] = (),
        quantization_config=None,
    ):
        """Load a built-in model name, a local folder, a hub id, or an emollm checkpoint folder.

        A folder with ``emollm_config.json`` is a trained checkpoint (:func:`load_checkpoint`): its base
        model, LoRA adapter, encoders and projector weights are restored. Otherwise ``adapters`` builds
        fresh (untrained) adapters on the base model (seed torch first for reproducible projectors), which
        is how the training recipes build theirs; ``quantization_config`` loads the base model in 4 bits
        (QLoRA).
        """
        if is_checkpoint(name_or_path):
            return load_checkpoint(
                name_or_path, dtype=dtype, device=device, quantization_config=quantization_config
            )
        model, tokenizer = load_base_model(
            name_or_path, dtype=dtype, device=device, quantization_config=quantization_config
        )
        specs = [s if isinstance(s, AdapterSpec) else AdapterSpec(**s) for s in adapters]
        encoders, projectors = build_adapters(specs, model.get_input_embeddings().embedding_dim)
        return cls(
            model,
            tokenizer,
            name=name_or_path,
            encoders=encoders,
            projectors=projectors if specs else None,
            adapters=specs,
        )

    @property
    def projectors(self) -> torch.nn.ModuleDict | None:
        """The projectors attached to the model, or None."""
        return get_projectors(self.model)

    @property
    def adapter_modalities(self) -> dict[str, str]:
        """Adapter key -> its modality, in slot order (empty for a text-only model).

        The keys are what encoders, projectors, frames and frame statistics are keyed by: the modality
        itself, or the adapter's name when a modality has several (:attr:`AdapterSpec.key`).
        """
        projectors = self.projectors or {}
        by_key = {spec.key: spec.modality for spec in self.adapters}
        return {key: by_key.get(key, key) for key in projectors}

    @property
    def adapter_keys(self) -> tuple[str, ...]:
        """Adapter keys, in slot order: the keys of the frames every prompt needs (see :meth:`encode`)."""
        return tuple(self.adapter_modalities)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities with a placeholder in the prompt, in placeholder order (empty for a text-only model)."""
        return tuple(dict.fromkeys(self.adapter_modalities.values()))

    @property
    def num_tokens(self) -> dict[str, int]:
        """Modality -> pseudo-token slots at its placeholder (the sum of its adapters' K)."""
        projectors = self.projectors or {}
        counts: dict[str, int] = {}
        for key, modality in self.adapter_modalities.items():
            counts[modality] = counts.get(modality, 0) + int(projectors[key].num_tokens)
        return counts

    @property
    def placeholders(self) -> dict[str, str]:
        """Template variables for the prompt: ``{"audio": "<|audio|>"}`` for each adapted modality."""
        return {m: PLACEHOLDERS[m] for m in self.modalities}

    def encoder_inputs(self, key: str, audio: Sequence, transcripts: Sequence) -> list:
        """What adapter ``key``'s encoder takes for each clip: the audio, or ``{"audio", "transcript"}``.

        The dict goes to an encoder that measures vowel by vowel (``takes_transcript``, e.g.
        ``prosody_functionals``); None audio stays None.
        """
        if not getattr(self.encoders.get(key), "takes_transcript", False):
            return list(audio)
        return [None if a is None else {"audio": a, "transcript": t} for a, t in zip(audio, transcripts)]

    def encode(self, key: str, inputs: Sequence, speakers: Sequence | None = None) -> list[torch.Tensor]:
        """The frames ``(T_i, D)`` adapter ``key``'s projector reads for each input (audio, image folders...).

        The frozen encoder's output, normalised per speaker when the adapter says so
        (:meth:`normalize_frames`); ``speakers`` gives one speaker id (or None) per input. ``key`` is an
        adapter key (:attr:`adapter_keys`): the modality, unless it has several adapters.
        """
        if key not in self.encoders:
            raise ConfigError(f"no encoder for {key!r}; this model has {sorted(self.encoders) or 'none'}")
        return self.normalize_frames(key, self.encoders[key].encode(inputs), speakers)

    def normalizes(self, key: str) -> bool:
        """Whether adapter ``key`` z-scores its frames per speaker (``normalize="speaker"``)."""
        return any(s.key == key and s.normalize == "speaker" for s in self.adapters)

    def fit_frame_normalizers(self, frames: Mapping[str, Sequence[torch.Tensor]], speakers: Sequence) -> None:
        """Fit :attr:`frame_normalizers` on raw encoder ``frames`` (adapter key -> one tensor per clip).

        Only adapters with ``normalize="speaker"`` are fitted; labels are never needed.
        """
        from emollm.modeling.frame_norm import FrameNormalizer

        for key, clips in frames.items():
            if self.normalizes(key) and clips:
                self.frame_normalizers[key] = FrameNormalizer.fit(clips, speakers)

    def normalize_frames(
        self,
        key: str,
        frames: Sequence[torch.Tensor],
        speakers: Sequence | None = None,
        normalizers: Mapping | None = None,
    ) -> list[torch.Tensor]:
        """Raw encoder ``frames`` as the projector reads them: unchanged, or z-scored per speaker.

        ``key`` is the adapter's key; ``normalizers`` (adapter key -> ``FrameNormalizer``) are the statistics
        to use; default the model's own (:attr:`frame_normalizers`).

        Raises:
            ConfigError: the adapter normalises per speaker but no statistics were fitted or loaded.
        """
        frames = list(frames)
        if not self.normalizes(key):
            return frames
        normalizer = (self.frame_normalizers if normalizers is None else normalizers).get(key)
        if normalizer is None:
            raise ConfigError(
                f"the {key} adapter normalises frames per speaker, but no statistics are fitted; call "
                "fit_frame_normalizers(...) or load a checkpoint that saved them"
            )
        speakers = [None] * len(frames) if speakers is None else list(speakers)
        if len(speakers) != len(frames):
            raise ConfigError(f"got {len(speakers)} speakers for {len(frames)} inputs; give one per input")
        return [normalizer(clip, speaker) for clip, speaker in zip(frames, speakers)]

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt with placeholders expanded to K pseudo-token slots."""
        return [
            tokenize_with_placeholders(
                self.tokenizer,
                p,
                self.num_tokens,
                add_special_tokens=prompt_adds_special_tokens(self.tokenizer, p),
            )
            for p in prompts
        ]

    @torch.no_grad()
    def pseudo_vectors(
        self, ids: Sequence[Sequence[int]], frames: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[torch.Tensor]:
        """The projector vectors for each prompt's slots, ``(sum K, hidden)`` per prompt.

        Args:
            ids: Prompts tokenised by :meth:`tokenize`.
            frames: One dict per prompt, adapter key -> encoder frames ``(T, D)`` (from :meth:`encode`).
        """
        from emollm.modeling.encoders import pad_frames

        if len(frames) != len(ids):
            raise ConfigError(f"got frames for {len(frames)} prompts but there are {len(ids)} prompts")
        device = next(self.model.parameters()).device
        width = max(len(row) for row in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        text_mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            text_mask[i, : len(row)] = True
        batched = {}
        for key in self.adapter_keys:
            rows = []
            for i, item in enumerate(frames):
                if key not in item:
                    raise ConfigError(
                        f"prompt {i} has no {key!r} frames; this model needs {self.adapter_keys}"
                    )
                rows.append(torch.as_tensor(item[key], dtype=torch.float32))
            padded, mask = pad_frames(rows)
            batched[key] = (padded.to(device), mask.to(device))
        embedding = self.model.get_input_embeddings()
        slots = input_ids == PSEUDO_TOKEN_ID
        token_embeds = embedding(input_ids.masked_fill(slots, 0).to(device))
        text = pooled_text_embeds(token_embeds, (text_mask & ~slots).to(device))
        vectors = project_frames(self.projectors, batched, text)
        return list(vectors.to(embedding.weight.dtype))

    def _inputs(self, prompts: Sequence[str], frames):
        """Prompts as the lm functions take them: strings, or ids + pseudo vectors when adapters exist."""
        if not self.adapter_keys:
            if frames is not None:
                raise ConfigError("frames were given but this model has no adapters (a text-only model)")
            return list(prompts), None
        if frames is None:
            raise ConfigError(
                f"this model has {list(self.adapter_keys)} adapters: pass frames=[{{key: frames}}, ...] "
                f"(see EmotionLM.encode), one per prompt"
            )
        ids = self.tokenize(prompts)
        return ids, self.pseudo_vectors(ids, frames)

    def score(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        frames: Sequence[Mapping[str, torch.Tensor]] | None = None,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Log-probabilities, shape ``(len(prompts), len(labels))``; see :func:`score_labels`.

        ``frames`` (one dict per prompt, modality -> frames) is required when the model has adapters.
        """
        inputs, vectors = self._inputs(prompts, frames)
        return score_labels(
            self.model,
            self.tokenizer,
            inputs,
            get_label_set(labels),
            length_normalize=length_normalize,
            batch_size=batch_size,
            pseudo_embeds=vectors,
        )

    def distribution(
        self,
        prompts: Sequence[str],
        labels: str | LabelSet | Sequence[str],
        *,
        frames: Sequence[Mapping[str, torch.Tensor]] | None = None,
        length_normalize: bool = False,
        batch_size: int = 8,
    ) -> torch.Tensor:
        """Probabilities over the label set (softmax of :meth:`score`); each row sums to 1."""
        scores = self.score(
            prompts, labels, frames=frames, length_normalize=length_normalize, batch_size=batch_size
        )
        return scores.softmax(dim=-1)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        frames: Sequence[Mapping[str, torch.Tensor]] | None = None,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        batch_size: int = 8,
    ) -> list[str]:
        """Completions of the prompts, in order; see :func:`emollm.modeling.lm.generate`."""
        inputs, vectors = self._inputs(prompts, frames)
        return generate(
            self.model,
            self.tokenizer,
            inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            batch_size=batch_size,
            pseudo_embeds=vectors,
        )

    def prompt_length(self, prompt: str) -> int:
        """Number of tokens of ``prompt`` as the model sees it (placeholders count K each)."""
        if self.adapter_keys:
            return len(self.tokenize([prompt])[0])
        return len(prompt_token_ids(self.tokenizer, prompt))


def load_checkpoint(
    path,
    *,
    dtype=None,
    device: str | None = None,
    trainable: bool = False,
    merge: bool = True,
    quantization_config=None,
) -> EmotionLM:
    """Rebuild the :class:`EmotionLM` saved in checkpoint folder ``path``.

    The folder's files are read by :mod:`emollm.modeling.checkpoint`; the base model is loaded by name
    (:func:`emollm.modeling.base.load_base_model`), then the LoRA adapter and the projector weights.

    Args:
        path: The checkpoint folder.
        dtype: Model dtype (see :func:`emollm.load_base_model`).
        device: Device to load onto.
        trainable: Keep the LoRA weights and projectors trainable (to continue training, e.g. GRPO after SFT).
        merge: For inference, merge the LoRA weights into the base model (faster, same outputs).
        quantization_config: Load the base model quantized (e.g. 4-bit, to continue with QLoRA).

    Returns:
        An ``EmotionLM`` whose ``checkpoint_config`` attribute holds the parsed ``emollm_config.json``.

    Raises:
        ModelError: no readable ``emollm_config.json``, LoRA or projector weights that are missing, or weights
            that do not fit.
    """
    from emollm.modeling import base  # looked up at call time, so a test can swap the loader
    from emollm.modeling.frame_norm import FrameNormalizer

    folder = Path(path).expanduser()
    config = read_checkpoint_config(folder)
    if config.get("lora"):  # before the base model loads, and before PEFT would look for them on the hub
        missing = [] if (folder / "adapter_config.json").is_file() else ["adapter_config.json"]
        if not any((folder / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
            missing.append("adapter_model.safetensors")
        if missing:
            raise ModelError(
                f"the checkpoint {folder} lacks {' and '.join(missing)}, its LoRA weights "
                f"(emollm_config.json says it has LoRA): the save was cut or files were removed; load a "
                f"complete checkpoint-N folder of the run, or train again"
            )
    model, tokenizer = base.load_base_model(
        config["base_model"], dtype=dtype, device=device, quantization_config=quantization_config
    )
    if config.get("lora"):
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
        except Exception as exc:  # safetensors, json, size mismatches: all mean the files are not usable
            raise ModelError(
                f"the LoRA weights in {folder} cannot be loaded ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); the files are damaged or belong to another model: "
                f"load a complete checkpoint-N folder of the run, or train again"
            ) from exc
        if merge and not trainable:
            model = model.merge_and_unload()
    specs = [AdapterSpec(**a) for a in config["adapters"]]
    encoders, projectors = build_adapters(specs, model.get_input_embeddings().embedding_dim)
    if specs:
        load_projector_weights(projectors, folder)
        projectors.requires_grad_(trainable)
    lm = EmotionLM(
        model,
        tokenizer,
        name=str(folder),
        encoders=encoders,
        projectors=projectors if specs else None,
        adapters=specs,
        frame_normalizers={
            m: FrameNormalizer.from_dict(n) for m, n in config.get("frame_normalizers", {}).items()
        },
    )
    lm.checkpoint_config = config
    return lm
