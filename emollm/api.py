"""The Python API: ``EmotionReasoner`` turns speech and/or text into a label, a distribution and a rationale.

>>> from emollm import EmotionReasoner
>>> reasoner = EmotionReasoner.from_pretrained(labels="ravdess8", strategy="acoustic")  # doctest: +SKIP
>>> prediction = reasoner.predict(audio="clip.wav", transcript="Kids are talking.")  # doctest: +SKIP
>>> prediction.label, prediction.distribution["angry"], prediction.rationale  # doctest: +SKIP

What a prediction is made of:

1. **Prosody** (when there is audio and prosody is on): :func:`emollm.extract_prosody` aligns the transcript
   (or finds syllable nuclei when there is none) and measures every vowel;
   :func:`emollm.prosody.describe.describe` turns the salient cues into words, relative to the speaker when a
   fitted normaliser knows them, else to the utterance itself.
2. **Prompt**: the strategy's template (:mod:`emollm.prompting`) with the transcript, the last
   ``context_turns`` turns, the speaker, the description and the label set, in the model's chat template.
3. **Decoding** (``mode``): ``"score"`` gives the distribution (softmax of each label's log-probability
   at the answer slot) and its argmax; ``"generate"`` gives a completion whose parsed answer is the label
   (None when it names none); ``"both"`` (the default) gives the distribution, takes the label from it, and
   adds the generated rationale, keeping the generated answer as ``generated_label``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from emollm.asr import check_backend
from emollm.data.schema import Utterance
from emollm.errors import AlignmentError, AudioError, ConfigError, DataError
from emollm.inputs import LABEL_TOKENS, TAGGED_TOKENS, PromptBuilder, as_turns, prompt_speaker
from emollm.labels import LabelSet
from emollm.modeling.base import DEFAULT_MODEL
from emollm.parsing import parse_completion
from emollm.prompting import SYSTEM_PROMPT

logger = logging.getLogger(__name__)

MODES = ("score", "generate", "both")

ITEM_ERRORS = (AudioError, AlignmentError, DataError, OSError)
"""What one item's data can raise (unreadable audio, ...): :meth:`EmotionReasoner.predict_batch` keeps it to
that item. Configuration mistakes (:class:`~emollm.errors.ConfigError`) still stop the call."""


@dataclass
class EmotionPrediction:
    """What :meth:`EmotionReasoner.predict` says about one utterance.

    Attributes:
        label: The predicted label (argmax of ``distribution`` in score/both modes, the parsed answer in
            generate mode), or None when a generated answer named no label.
        distribution: Label -> probability over the whole label set (score/both modes), else None.
        rationale: The model's reasoning (the ``<think>`` text, or the text before the answer); "" when
            nothing was generated.
        prosody: The description of how it was said that went into the prompt, or None.
        completion: The raw generated text, or None in score mode.
        generated_label: The label parsed from ``completion``, or None.
        format_ok: Whether ``completion`` is exactly ``<think>..</think><answer>label</answer>``; None in
            score mode.
        prompt: The full prompt the model saw (chat template included).
        notes: What was degraded on the way (no transcript, alignment fallback, clipped audio, ...).
        transcript_source: Where the transcript in the prompt came from: ``"given"`` (the caller's),
            ``"asr"`` (speech recognition, see ``asr``) or ``"none"`` (no transcript: the prompt says it is
            unknown, and prosody comes from syllable nuclei).
        asr: The speech recognition result (:meth:`emollm.asr.Transcript.to_dict`: text, words with times,
            backend, confidence) when the audio was transcribed, else None.
    """

    label: str | None
    distribution: dict[str, float] | None = None
    rationale: str = ""
    prosody: str | None = None
    completion: str | None = None
    generated_label: str | None = None
    format_ok: bool | None = None
    prompt: str = ""
    notes: list[str] = field(default_factory=list)
    transcript_source: str = "given"
    asr: dict | None = None

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    def to_text(self) -> str:
        """Readable lines: the label, the distribution as bars, the prosody description and the rationale."""
        lines = [f"label: {self.label or '(none: the answer named no label)'}"]
        if self.distribution:
            lines.append("distribution:")
            for label, p in sorted(self.distribution.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {label:<10} {p:6.3f} {'#' * round(40 * p)}")
        if self.transcript_source == "asr" and self.asr:
            confidence = self.asr.get("confidence")
            said = f", confidence {confidence:.2f}" if confidence is not None else ""
            lines.append(f"transcript (speech recognition, {self.asr['backend']}{said}): {self.asr['text']}")
        if self.prosody:
            lines.append(f"prosody: {self.prosody}")
        if self.completion is not None:
            lines.append(f"rationale: {self.rationale or '(empty)'}")
            lines.append(
                f"generated answer: {self.generated_label or 'none parsed'}; format ok: {self.format_ok}"
            )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


class EmotionReasoner:
    """Emotion label, distribution and rationale for an utterance, from any chat LLM.

    Args:
        lm: An :class:`~emollm.modeling.EmotionLM` (see :meth:`from_pretrained`).
        labels: Label-set name, :class:`~emollm.labels.LabelSet` or list of labels to choose from.
        strategy: Prompt template name (``minimal``, ``acoustic``, ``cot``) or path to a ``.jinja`` file.
        mode: ``"score"``, ``"generate"`` or ``"both"`` (see the module docstring).
        context_turns: Show at most this many earlier turns; None shows all that are given.
        prosody: Describe the voice in the prompt when there is audio. None: on for ``acoustic`` only, so
            ``minimal`` and ``cot`` stay text-only baselines.
        prosody_style: ``"vowel"`` (summary and salient vowels), ``"utterance"`` (summary only) or
            ``"measures"`` (every utterance measure relative to the speaker, then every vowel).
        normalizer: A fitted :class:`~emollm.prosody.normalize.ProsodyNormalizer` or the path of its JSON;
            None describes each utterance relative to itself.
        max_vowels: At most this many vowels described (None: the style's default, 3 or 20 for measures).
        max_words: The description's word limit (None: the style's default, 80 or 200 for measures).
        max_new_tokens: Generation length; None: 16 for templates that ask for the label only, 128 for
            templates that ask for ``<think>``/``<answer>``.
        do_sample: Sample instead of greedy decoding; ``temperature`` applies then.
        temperature: Sampling temperature.
        length_normalize: Score labels by mean instead of summed token log-probability.
        calibrate: Contextual calibration of score mode (Zhao et al., 2021): divide each label's probability
            by its probability after a content-free input (transcript and description "N/A", no context),
            then renormalise. It removes the prompt's prior bias toward some labels.
        batch_size: Prompts per forward pass.
        system: System message; None for none.
    """

    def __init__(
        self,
        lm,
        *,
        labels: str | LabelSet | Sequence[str] = "ravdess8",
        strategy: str = "acoustic",
        mode: str = "both",
        context_turns: int | None = None,
        prosody: bool | None = None,
        prosody_style: str = "vowel",
        normalizer=None,
        max_vowels: int | None = None,
        max_words: int | None = None,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        length_normalize: bool = False,
        calibrate: bool = False,
        batch_size: int = 8,
        system: str | None = SYSTEM_PROMPT,
    ):
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ConfigError(
                f"max_new_tokens must be an integer >= 1 (or None: the default), got {max_new_tokens!r}"
            )
        if do_sample and not (
            isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
        ):
            raise ConfigError(
                f"temperature must be a number > 0 when do_sample=True, got {temperature!r}; for greedy "
                "decoding use do_sample=False"
            )
        if mode == "generate":
            ignored = [
                name for name, on in (("calibrate", calibrate), ("length_normalize", length_normalize)) if on
            ]
            if ignored:
                raise ConfigError(
                    f"{' and '.join(ignored)} {'change' if len(ignored) > 1 else 'changes'} the label "
                    "distribution, which mode 'generate' does not "
                    "compute; use mode 'score' or 'both', or leave them off"
                )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if prosody_style not in ("vowel", "utterance", "measures"):
            raise ConfigError(
                f"prosody_style must be 'vowel', 'utterance' or 'measures', got {prosody_style!r} (use "
                "prosody=False for no description)"
            )
        # the template is read once (fails early, listing the shipped strategies): later edits of the file
        # do not change this reasoner's prompts, and the digest it records names exactly what it renders
        self.prompts = PromptBuilder(
            lm.tokenizer,
            strategy,
            labels,
            context_turns=context_turns,
            system=system,
            placeholders=getattr(lm, "placeholders", {}),
        )
        # a template naming a variable it does not receive fails now, not after the audio work
        self.prompts.message("x")
        self.prompts.message("x", [("A", "y")], "B", "z")
        if isinstance(normalizer, (str, Path)):
            from emollm.prosody.normalize import ProsodyNormalizer

            normalizer = ProsodyNormalizer.load(normalizer)
        self.lm = lm
        self.mode = mode
        self.prosody = (Path(strategy).stem == "acoustic") if prosody is None else bool(prosody)
        self.prosody_style = prosody_style
        self.normalizer = normalizer
        self.max_vowels = max_vowels
        self.max_words = max_words
        self.do_sample = do_sample
        self.temperature = temperature
        self.length_normalize = length_normalize
        self.calibrate = calibrate
        self._content_free = None
        self.batch_size = batch_size
        self.max_new_tokens = (
            max_new_tokens
            if max_new_tokens is not None
            else (TAGGED_TOKENS if self.prompts.asks_for_tags else LABEL_TOKENS)
        )

    # the prompt's settings live in its builder
    labels = property(lambda self: self.prompts.labels, doc="The :class:`~emollm.labels.LabelSet` offered.")
    strategy = property(lambda self: self.prompts.strategy, doc="The template's name or path.")
    context_turns = property(lambda self: self.prompts.context_turns, doc="Earlier turns shown at most.")
    system = property(lambda self: self.prompts.system, doc="The system message.")
    template_sha256 = property(lambda self: self.prompts.template_sha256, doc="Digest of the template.")

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_MODEL, *, dtype=None, device: str | None = None, **settings
    ) -> EmotionReasoner:
        """Load a model (built-in name, local folder or hub id) and wrap it.

        Args:
            name_or_path: See :func:`emollm.load_base_model`; the offline default needs nothing else.
            dtype: torch dtype of the weights (default float32).
            device: ``"cpu"``, ``"cuda"``, ...
            **settings: The keyword arguments of :class:`EmotionReasoner` (``labels``, ``strategy``...).

        A trained checkpoint folder (one with ``emollm_config.json``, from ``emollm sft`` or ``emollm grpo``)
        restores the LoRA weights, the adapters and the settings it was trained with (label set, strategy,
        prosody); ``settings`` given here override the saved ones.
        """
        from emollm.modeling.emotion_lm import EmotionLM

        problem = device_problem(device)
        if problem:
            raise ConfigError(problem)
        lm = EmotionLM.from_pretrained(name_or_path, dtype=dtype, device=device)
        saved = dict(getattr(lm, "checkpoint_config", {}).get("reasoner", {}))
        if settings.get("mode") == "generate":  # a saved score-mode setting does not apply to generation
            for name in ("calibrate", "length_normalize"):
                if name not in settings:
                    saved.pop(name, None)
        return cls(lm, **{**saved, **settings})

    # -- building blocks -----------------------------------------------------------------------------------

    def describe(
        self, audio, transcript: str | None = None, speaker: str | None = None, **extract_kwargs
    ) -> str:
        """The prosody description of ``audio`` with this reasoner's settings, like its namesakes.

        ``extract_kwargs`` go to :func:`emollm.extract_prosody` (``textgrid``, ``gender``...); what was
        degraded on the way is in ``extract_prosody(...).notes`` (:meth:`predict` reports it).
        """
        from emollm.prosody.pipeline import extract_prosody

        return self.describe_features(extract_prosody(audio, transcript, speaker=speaker, **extract_kwargs))

    def describe_features(self, features, speaker: str | None = None) -> str:
        """The description of ready :class:`~emollm.prosody.ProsodyFeatures` with this reasoner's settings."""
        from emollm.prosody.describe import describe_features

        return describe_features(
            features,
            normalizer=self.normalizer,
            speaker=speaker,
            style=self.prosody_style,
            max_vowels=self.max_vowels,
            max_words=self.max_words,
        )

    def content_free_scores(self):
        """Label log-probabilities after a content-free input ("N/A"), shape ``(len(labels),)``; cached."""
        if getattr(self.lm, "modalities", ()):
            raise ConfigError(
                "calibrate=True is for zero-shot prompting; a model with adapters is not calibrated"
            )
        if self._content_free is None:
            prompt = self.build_prompt("N/A", None, None, "N/A" if self.prosody else None, for_scoring=True)
            self._content_free = self.lm.score([prompt], self.labels, length_normalize=self.length_normalize)[
                0
            ]
        return self._content_free

    def build_prompt(
        self,
        transcript: str | None = None,
        context=None,
        speaker: str | None = None,
        prosody: str | None = None,
        *,
        for_scoring: bool = False,
    ) -> str:
        """The full prompt (chat template included); ``for_scoring`` adds the answer prefix."""
        return self.prompts.prompt(transcript, context, speaker, prosody, for_scoring=for_scoring)

    def encode(self, rows: Sequence[dict]) -> list[dict]:
        """Encoder frames for each item, one dict adapter key -> ``(T, D)`` tensor (adapter models only).

        An item's ``audio`` feeds the audio adapter, its ``video`` (a frame folder, video file or image
        list) the video adapter. An adapter that normalises frames per speaker uses the checkpoint's
        statistics of the item's ``speaker`` (the training corpus's for a speaker it has not heard).
        """
        per_item: list[dict] = [{} for _ in rows]
        for key, modality in self.lm.adapter_modalities.items():
            inputs = self.lm.encoder_inputs(
                key, [row.get(modality) for row in rows], [row.get("transcript") for row in rows]
            )
            missing = [i for i, x in enumerate(inputs) if x is None]
            if missing:
                raise ConfigError(
                    f"this model hears {modality} through its adapter, but item(s) {missing[:5]} have no "
                    f"{modality}; give {modality}= for every item"
                )
            speakers = [row.get("speaker") for row in rows]  # picks the speaker's frame statistics, if any
            for item, frames in zip(per_item, self.lm.encode(key, inputs, speakers)):
                item[key] = frames
        return per_item

    # -- predictions ---------------------------------------------------------------------------------------

    def predict(
        self,
        audio=None,
        transcript: str | None = None,
        context=None,
        speaker: str | None = None,
        *,
        asr: str = "pocketsphinx",
        **extract_kwargs,
    ) -> EmotionPrediction:
        """Predict the emotion of one utterance.

        Args:
            audio: A file path, an array (with ``sample_rate=``) or an :class:`~emollm.audio.Audio`; None for
                text only.
            transcript: What was said; None when unknown (audio must then be given): it is then recognised
                from the audio (``asr``).
            context: Earlier turns, oldest first: :class:`~emollm.data.Turn` objects, ``{"speaker", "text"}``
                dicts or ``(speaker, text)`` pairs.
            speaker: Who is speaking (shown in the prompt; selects speaker statistics in the normaliser).
            asr: Speech recognition when there is audio and no transcript (:func:`emollm.asr.transcribe`):
                ``"pocketsphinx"`` (offline, the default), ``"hf:<folder or hub id>"``, or ``"none"``: no
                transcript, the prompt says it is unknown and prosody comes from syllable nuclei (what
                happens too when the recogniser finds no words). The prediction's ``transcript_source`` and
                ``asr`` say what was used.
            **extract_kwargs: For the prosody pipeline: ``textgrid``, ``gender``, ``sample_rate``...

        Raises:
            ConfigError: neither audio nor transcript, a transcript that is not a string, or an unknown
                ``asr``. AudioError: unusable audio. ModelError: an ``hf:`` model that cannot be loaded.
        """
        item = {"audio": audio, "transcript": transcript, "context": context, "speaker": speaker,
                **extract_kwargs}  # fmt: skip
        return self.predict_batch([item], errors="raise", asr=asr)[0]

    def predict_batch(
        self,
        items: Sequence,
        *,
        prosody: Sequence[str | None] | None = None,
        frames: Sequence[dict] | None = None,
        cache: dict | None = None,
        errors: str = "note",
        asr: str = "none",
    ) -> list[EmotionPrediction]:
        """Predict many utterances, batching the model calls.

        Args:
            items: :class:`~emollm.data.Utterance` objects or dicts with the arguments of :meth:`predict`.
            prosody: Ready descriptions, one per item (None entries: no description), e.g. from a cached
                batch extraction; when given, no audio is processed here.
            frames: Ready encoder frames, one dict modality -> ``(T, D)`` per item, for a model with
                adapters, as the projector reads them: per-speaker normalised for an adapter with
                ``normalize="speaker"`` (:func:`emollm.inputs.encode_utterances` caches and normalises).
                By default the model's encoders run on each item's audio (and video).
            cache: A dict this method fills with each prompt's label scores and greedy completion and
                reads back in later calls, so a prompt seen in an earlier batch is not computed again (the
                evaluation harness passes one per run: RAVDESS's text-only prompts are 2 for 1080 clips).
                Entries are keyed by the model object and the settings that decide them (labels, length
                normalisation, ``max_new_tokens``), so one cache can serve several reasoners; it is valid
                only while the model's weights stay as they were. Unused with adapters (each item's audio
                differs); sampled completions are never reused.
            errors: What an item whose data fails does. ``"note"`` (the default) keeps the failure to that
                item, as the evaluation harness does: audio that cannot be read or measured leaves the item
                without a prosody description (predicted from its transcript, with a ``prosody failed``
                note); an item left with nothing to go on (no transcript, or an adapter model that cannot
                hear its audio) gets ``label=None`` and a ``not predicted`` note. ``"raise"`` raises the
                first such error (:meth:`predict` does).
            asr: Speech recognition for items with audio and no transcript, as in :meth:`predict`; here
                ``"none"`` by default, so that a corpus is predicted from its own transcripts and nothing
                else (the evaluation harness). A recognised transcript is used like a given one (prompt and
                forced alignment); with ``prosody`` given, only in the prompt.

        Returns:
            One :class:`EmotionPrediction` per item, in order. Identical prompts are computed once (the
            decoding is deterministic unless ``do_sample``).

        A prompt longer than the model's context (its ``max_position_embeddings``, less room for the answer)
        loses context turns from the oldest on until it fits; the utterance is always kept. A note and a
        logged warning say how many turns were left out, or that even the utterance alone is too long (the
        prediction is then made, but unreliable).
        """
        if errors not in ("note", "raise"):
            raise ConfigError(f"errors must be 'note' or 'raise', got {errors!r}")
        problem = check_backend(asr)
        if problem:
            raise ConfigError(f"asr: {problem}")
        rows = [_as_fields(item) for item in items]
        if prosody is not None and len(prosody) != len(rows):
            raise ConfigError(f"prosody has {len(prosody)} entries for {len(rows)} items")
        descriptions: list[str | None] = []
        notes: list[list[str]] = []
        failed: dict[int, str] = {}  # item -> why it is not predicted
        sources: list[str] = []
        recognized: list[dict | None] = []
        for i, row in enumerate(rows):
            has_words = bool((row["transcript"] or "").strip())
            if row["audio"] is None and not has_words:
                raise ConfigError("predict needs audio, a transcript, or both; got neither")
            asr_notes, heard = [], None
            if not has_words and row["audio"] is not None and asr != "none":
                asr_notes, heard = _recognize(row, asr, errors)
                has_words = heard is not None and bool(heard.words)
            sources.append("asr" if has_words and heard is not None else "given" if has_words else "none")
            recognized.append(heard.to_dict() if heard is not None else None)
            if prosody is not None:
                descriptions.append(prosody[i] if self.prosody else None)
                notes.append([])
            elif self.prosody and row["audio"] is not None:
                try:
                    measured = extract_for_prompt(
                        row["audio"], row["transcript"], row["speaker"], **row["extract"]
                    )
                except ITEM_ERRORS as exc:
                    if errors == "raise":
                        raise
                    descriptions.append(None)
                    notes.append([f"prosody failed: {type(exc).__name__}: {exc}"])
                    if not has_words:
                        failed[i] = "no transcript, and the audio could not be measured"
                else:
                    descriptions.append(self.describe_features(measured) or None)
                    notes.append(list(measured.notes))
            else:
                descriptions.append(None)
                notes.append(["text only: no audio was given"] if row["audio"] is None else [])
            notes[-1][:0] = asr_notes
            if not has_words:
                notes[-1].append("no transcript: the prompt says it is unknown")

        adapted = bool(getattr(self.lm, "modalities", ()))
        if adapted and frames is not None and len(frames) != len(rows):
            raise ConfigError(f"frames has {len(frames)} entries for {len(rows)} items")
        if adapted and frames is None:
            frames = self._encode_each(rows, failed, errors)

        # The prompts, with context turns left out (oldest first) where the model's context is too short
        generating = self.mode in ("generate", "both")
        scoring = self.mode in ("score", "both")
        generation_prompts: list[str] = [""] * len(rows)
        scoring_prompts: list[str] = [""] * len(rows)
        for i, (row, text) in enumerate(zip(rows, descriptions)):
            if i in failed:
                continue
            generation_prompts[i], scoring_prompts[i], note = self._fitted_prompts(row, text, scoring)
            if note:
                notes[i].append(note)
        if not scoring:
            scoring_prompts = generation_prompts
        live = [i for i in range(len(rows)) if i not in failed]

        if adapted:
            cache = None  # each item's audio differs: nothing is reused
        elif cache is None:
            cache = {}  # identical prompts within this call are still computed once
        # Besides the prompt, what decides a result: the model object (an entry is valid while its weights
        # stay as they were), the labels and length normalisation; raw scores are kept, so calibration,
        # which depends on this reasoner's content-free prompt, is applied after the lookup.
        score_key = ("score", self.lm, tuple(self.labels.labels), self.length_normalize)
        generate_key = ("generate", self.lm, self.max_new_tokens)
        extra = {"frames": [frames[i] for i in live]} if adapted else {}

        distributions: dict[int, dict[str, float]] = {}
        completions: dict[int, str] = {}
        if scoring and live:
            asked = [scoring_prompts[i] for i in live]
            todo = asked if adapted else [p for p in dict.fromkeys(asked) if (score_key, p) not in cache]
            if todo:
                scores = self.lm.score(
                    todo,
                    self.labels,
                    length_normalize=self.length_normalize,
                    batch_size=self.batch_size,
                    **extra,
                )
            if not adapted:
                cache.update({(score_key, p): row for p, row in zip(todo, scores.unbind(0) if todo else ())})
                scores = torch.stack([cache[score_key, p] for p in asked])
            if self.calibrate:
                scores = scores - self.content_free_scores()
            for i, row in zip(live, scores.softmax(dim=-1).tolist()):
                distributions[i] = dict(zip(self.labels.labels, row))
        if generating and live:
            asked = [generation_prompts[i] for i in live]
            settings = {
                "max_new_tokens": self.max_new_tokens,
                "do_sample": self.do_sample,
                "temperature": self.temperature,
                "batch_size": self.batch_size,
            }
            if adapted or self.do_sample:  # sampled text is not a function of the prompt: never reused
                texts = self.lm.generate(asked, **settings, **extra)
            else:
                todo = [p for p in dict.fromkeys(asked) if (generate_key, p) not in cache]
                if todo:
                    cache.update(
                        {(generate_key, p): t for p, t in zip(todo, self.lm.generate(todo, **settings))}
                    )
                texts = [cache[generate_key, p] for p in asked]
            completions.update(zip(live, texts))

        out = []
        for i in range(len(rows)):
            if i in failed:
                out.append(
                    EmotionPrediction(
                        label=None,
                        prosody=descriptions[i],
                        notes=[*notes[i], f"not predicted: {failed[i]}"],
                        transcript_source=sources[i],
                        asr=recognized[i],
                    )
                )
                continue
            dist, completion = distributions.get(i), completions.get(i)
            parsed = parse_completion(completion, self.labels) if completion is not None else None
            label = max(dist, key=dist.get) if dist is not None else (parsed.label if parsed else None)
            out.append(
                EmotionPrediction(
                    label=label,
                    distribution=dist,
                    rationale=parsed.rationale if parsed else "",
                    prosody=descriptions[i],
                    completion=completion,
                    generated_label=parsed.label if parsed else None,
                    format_ok=parsed.format_ok if parsed else None,
                    prompt=generation_prompts[i] if completion is not None else scoring_prompts[i],
                    notes=notes[i],
                    transcript_source=sources[i],
                    asr=recognized[i],
                )
            )
        return out

    def _encode_each(self, rows: list[dict], failed: dict[int, str], errors: str) -> list[dict | None]:
        """:meth:`encode` of the rows not yet failed, None for the others.

        With ``errors="note"`` an item that fails is recorded in ``failed`` (the batch is retried item by item
        to find it).
        """
        todo = [i for i in range(len(rows)) if i not in failed]
        frames: list[dict | None] = [None] * len(rows)
        try:
            for i, item in zip(todo, self.encode([rows[i] for i in todo])):
                frames[i] = item
            return frames
        except ITEM_ERRORS:
            if errors == "raise":
                raise
        for i in todo:
            try:
                frames[i] = self.encode([rows[i]])[0]
            except ITEM_ERRORS as exc:
                failed[i] = f"the model's encoder could not read the audio: {type(exc).__name__}: {exc}"
        return frames

    def max_positions(self) -> int | None:
        """How many tokens the model reads at most (its ``max_position_embeddings``); None if unknown."""
        config = getattr(getattr(self.lm, "model", None), "config", None)
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def _answer_room(self, scoring: bool) -> int:
        """Positions kept after the prompt: the generated tokens, or in score mode the longest label's."""
        room = self.max_new_tokens if self.mode in ("generate", "both") else 0
        if scoring:
            tokenizer = self.lm.tokenizer
            longest = max(
                len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in self.labels.labels
            )
            room = max(room, longest)
        return room

    def _fitted_prompts(
        self, row: dict, description: str | None, scoring: bool
    ) -> tuple[str, str, str | None]:
        """The generation and scoring prompts of one item, cut to the model's context, and a note if cut.

        Context turns go first, oldest first; the utterance and its description are always kept, so a prompt
        too long even without context turns is returned as it is, with a note that says so.
        """
        turns = as_turns(row["context"])
        if self.context_turns is not None:
            turns = turns[len(turns) - self.context_turns :] if self.context_turns else []

        def build(keep: int) -> tuple[str, str]:
            shown = turns[len(turns) - keep :] if keep else []
            args = (row["transcript"], shown, row["name"], description)
            generation = self.build_prompt(*args)
            return generation, self.build_prompt(*args, for_scoring=True) if scoring else generation

        limit = self.max_positions()
        prompts = build(len(turns))
        if limit is None:
            return (*prompts, None)
        room = self._answer_room(scoring)
        # a token is at least one byte of text, plus the special tokens a tokenizer may add: short prompts
        # fit without being tokenised (pseudo-token placeholders, which stand for K tokens each, excepted)
        if (
            not getattr(self.lm, "modalities", ())
            and max(len(p.encode()) for p in prompts) + room + 4 <= limit
        ):
            return (*prompts, None)

        def length(candidate: tuple[str, str]) -> int:
            return max(self.lm.prompt_length(p) for p in set(candidate))

        full = length(prompts)
        if full + room <= limit:
            return (*prompts, None)
        low, high = 0, len(turns) - 1  # the most turns that fit lie in [low, high] if any do
        best = None
        while low <= high:
            mid = (low + high) // 2
            candidate = build(mid)
            if length(candidate) + room <= limit:
                best, low = (mid, candidate), mid + 1
            else:
                high = mid - 1
        if row["id"]:
            who = f"utterance {row['id']!r}"
        else:
            who = (
                f"utterance {_clip(row['transcript'])!r}"
                if row["transcript"]
                else "an utterance without transcript"
            )
        over = f"over the model's {limit} positions less {room} for the answer"
        if best is None:  # the utterance alone is too long: it is kept, and the result is flagged
            prompts = build(0)
            shortest = length(prompts) if turns else full
            cut = f"all {len(turns)} context turns left out, and still " if turns else ""
            note = (
                f"{cut}the prompt is {shortest} tokens, {over}: the result is unreliable; shorten the "
                "transcript" + (" or the prosody description (max_words)" if description else "")
            )
        else:
            keep, prompts = best
            note = (
                f"context cut to the last {keep} of {len(turns)} turns: with all of them the prompt is "
                f"{full} tokens, {over}"
            )
        logger.warning("%s: %s", who, note)
        return (*prompts, note)

    def settings(self) -> dict:
        """The settings that decide the predictions (recorded by the evaluation harness)."""
        return {
            "model": self.lm.name,
            "labels": list(self.labels.labels),
            "strategy": self.strategy,
            "template_sha256": self.template_sha256,  # an edited template is another prompt
            "mode": self.mode,
            "context_turns": self.context_turns,
            "prosody": self.prosody,
            "prosody_style": self.prosody_style,
            "normalizer": None if self.normalizer is None else "fitted",
            "max_vowels": self.max_vowels,
            "max_words": self.max_words,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "length_normalize": self.length_normalize,
            "calibrate": self.calibrate,
            "system": self.system,
        }

    def __repr__(self) -> str:
        return f"EmotionReasoner({json.dumps(self.settings())})"


def device_problem(device) -> str | None:
    """Why ``device`` cannot be used here (a CUDA device on a CPU build of torch...), or None if it can.

    >>> device_problem("cpu") is None
    True
    >>> device_problem("tpu:0")
    "device is 'tpu:0', which torch does not know; use cpu, cuda, cuda:N or mps"
    """
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        return f"device is {device!r}, which torch does not know; use cpu, cuda, cuda:N or mps"
    if parsed.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return f"device is {device!r}, but this torch is a CPU-only build (no CUDA support); use cpu"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"device is {device!r}, but no CUDA GPU is visible (CUDA_VISIBLE_DEVICES?); use cpu"
        if parsed.index is not None and parsed.index >= count:
            return (
                f"device is {device!r}, but only {count} CUDA GPU(s) are visible (cuda:0 to cuda:{count - 1})"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return f"device is {device!r}, but MPS (Apple GPU) is not available here; use cpu"
    return None


def _recognize(row: dict, backend: str, errors: str):
    """Transcribe an item's audio into ``row["transcript"]``; returns the notes and the Transcript (or None).

    Audio that cannot be read is kept to the item with ``errors="note"`` (the prosody step then says the
    same); a model that cannot be loaded always raises.
    """
    from emollm.asr import transcribe

    try:
        heard = transcribe(row["audio"], backend, sample_rate=row["extract"].get("sample_rate"))
    except ITEM_ERRORS as exc:
        if errors == "raise":
            raise
        return [f"speech recognition failed: {type(exc).__name__}: {exc}"], None
    if not heard.words:  # its note says so; the item goes on as one without a transcript
        return list(heard.notes), heard
    row["transcript"] = heard.text
    said = f", mean word confidence {heard.confidence:.2f}" if heard.confidence is not None else ""
    return [f"transcript from speech recognition ({heard.backend}{said}): {_clip(heard.text)!r}"], heard


def extract_for_prompt(audio, transcript: str | None, speaker: str | None = None, **extract_kwargs):
    """:func:`emollm.extract_prosody` for a prompt: a transcript the aligner cannot use falls back to nuclei.

    A blank transcript counts as none. A transcript with no English words (another script: the aligner's
    dictionary and acoustic model are English) is not aligned: vowels come from syllable nuclei, and the
    first note says why, as when alignment fails. With ``on_failure="raise"`` it raises instead.

    Raises:
        AudioError: unusable audio. AlignmentError: with ``on_failure="raise"``, a transcript that cannot be
            aligned.
    """
    from emollm.prosody.pipeline import extract_prosody
    from emollm.prosody.pronunciation import tokenize

    if transcript is not None and not transcript.strip():
        transcript = None
    if transcript is None or extract_kwargs.get("textgrid") is not None or tokenize(transcript)[0]:
        return extract_prosody(audio, transcript, speaker=speaker, **extract_kwargs)
    if extract_kwargs.get("on_failure") == "raise":
        raise AlignmentError(
            f"transcript {_clip(transcript)!r} has no English words to align (the aligner knows English only)"
        )
    features = extract_prosody(audio, None, speaker=speaker, **extract_kwargs)
    features.alignment.transcript = transcript
    features.notes = [
        f"the transcript has no English words to align ({', '.join(tokenize(transcript)[1][:5])}); fell "
        "back to syllable nuclei",
        *(note for note in features.notes if note != "no transcript"),
    ]
    return features


def _clip(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_text(value, what: str) -> None:
    """A transcript or speaker must be a string or None (a NaN from a table with a gap is neither)."""
    if value is not None and not isinstance(value, str):
        hint = " (a missing value? use None)" if isinstance(value, float) and math.isnan(value) else ""
        raise ConfigError(f"{what} must be a string or None, got {type(value).__name__} {value!r}{hint}")


def _as_fields(item) -> dict:
    """An Utterance or a dict of :meth:`EmotionReasoner.predict` arguments -> one normal form."""
    if isinstance(item, Utterance):
        audio = item.audio_path if item.audio_path is not None else item.audio
        extract = {"sample_rate": item.sample_rate} if item.audio is not None else {}
        if item.gender:
            extract["gender"] = item.gender
        fields = {
            "id": item.id,
            "audio": audio,
            "video": None,
            "transcript": item.transcript,
            "context": item.context,
            "speaker": item.speaker,
            "name": prompt_speaker(item),  # "corpus/name" ids; named only in conversations
            "extract": extract,
        }
    elif isinstance(item, dict):
        known = {"id", "audio", "video", "transcript", "context", "speaker"}
        fields = {
            "id": item.get("id"),
            "audio": item.get("audio"),
            "video": item.get("video"),
            "transcript": item.get("transcript"),
            "context": item.get("context"),
            "speaker": item.get("speaker"),
            "name": item.get("speaker"),
            "extract": {k: v for k, v in item.items() if k not in known and v is not None},
        }
    else:
        raise ConfigError(f"an item must be an Utterance or a dict of predict() arguments, got {type(item)}")
    _check_text(fields["transcript"], "transcript")
    _check_text(fields["speaker"], "speaker")
    return fields
