"""What the model is shown: the one home of the layer between an :class:`~emollm.data.Utterance` and the LLM.

The inference facade (:class:`emollm.EmotionReasoner`), the evaluation harness and both training recipes
build their inputs here, so a prompt made for training is the prompt seen at inference:

1. :func:`select_utterances`: a corpus split, its labelled utterances and the label set they are scored on
   (:func:`default_label_set`: the corpus's own), optionally a seeded draw of ``limit`` of them;
2. :func:`describe_utterances`: prosody of every utterance with audio (the cached batch extractor), a
   per-speaker normaliser fitted on them (no labels read), then the words each prompt shows
   (:func:`emollm.prosody.describe.describe_features`, the one normalise-then-describe path);
3. :func:`encode_utterances`: encoder frames for every adapted modality, z-scored per speaker when the adapter
   asks for it, shaped ``{modality: {utterance id: (T, D) tensor}}``;
4. :class:`PromptBuilder`: template + label set + context window + pseudo-token placeholders -> the full
   chat-formatted prompt (``for_scoring`` adds the answer prefix).

Nothing here mutates a model or a reasoner: fitted statistics are returned to the caller, who decides
whether to keep them (the recipes save the frame statistics with their checkpoints and refit the prosody
normaliser at evaluation, as the harness does for every run).

>>> builder = PromptBuilder(None, "minimal", ["sad", "angry"])
>>> builder.asks_for_tags
False
>>> print(builder.prompt("Leave me alone."))
Classify the emotion of the speaker in the utterance at the end.
Possible emotions: sad, angry.
Answer with exactly one emotion from the list and nothing else.
Utterance: "Leave me alone."
<BLANKLINE>
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from emollm.data import default_label_set, load_corpus
from emollm.data.schema import Turn
from emollm.errors import ConfigError, DataError
from emollm.labels import LABEL_SETS, LabelSet, get_label_set
from emollm.prompting import SYSTEM_PROMPT, answer_prefix, read_template, render_prompt, render_user_message

logger = logging.getLogger(__name__)

NORMALIZERS = ("speaker", "none")  # or the path of a saved ProsodyNormalizer JSON
LABEL_TOKENS = 16  # default generation length when the template asks for the label only
TAGGED_TOKENS = 128  # ... and when it asks for <think>/<answer> (a rationale, then the label)

__all__ = [
    "NORMALIZERS",
    "PromptBuilder",
    "as_turns",
    "default_label_set",
    "describe_utterances",
    "encode_utterances",
    "frames_of",
    "label_spec",
    "prompt_speaker",
    "select_utterances",
]


# -- which utterances ---------------------------------------------------------------------------------------


def select_utterances(
    corpus: str,
    split: str,
    *,
    labels: str | LabelSet | Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    data_root: str | Path = "../shared/data",
    context_turns: int | None = None,
) -> tuple[LabelSet, list]:
    """The label set and the labelled utterances of a corpus split (a seeded draw of ``limit`` of them).

    Args:
        corpus: ``ravdess``, ``meld``, ``iemocap`` or ``manifest:PATH`` (see :func:`emollm.data.load_corpus`).
        split: Split name.
        labels: Label set; None: :func:`default_label_set` of the corpus, and for a manifest its labels as
            written, in first-seen order.
        limit: Keep N utterances drawn with ``seed`` (not the first N, which in a sorted corpus would be one
            speaker and one class), in corpus order; None keeps all.
        seed: Seed of the draw.
        data_root: Folder holding the corpora.
        context_turns: Earlier conversation turns kept on each utterance (MELD, IEMOCAP).

    Raises:
        ConfigError: ``limit`` below 1. DataError: the split has no labelled utterance.

    >>> select_utterances("ravdess", "dev", limit=8)  # doctest: +SKIP
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 (or None for all), got {limit}")
    name = labels if labels is not None else default_label_set(corpus)
    utterances = load_corpus(corpus, split, data_root=data_root, labels=name, context_turns=context_turns)
    utterances = [u for u in utterances if u.label is not None]
    if not utterances:
        raise DataError(f"{corpus} split {split!r} has no labelled utterances")
    if name is None:  # a manifest without a label set: its labels as written, in first-seen order,
        name = list(get_label_set(list(dict.fromkeys(u.label for u in utterances))).labels)
        utterances = [  # ... read again through that set, so the gold labels are its (lower-case) labels
            u
            for u in load_corpus(corpus, split, data_root=data_root, labels=name, context_turns=context_turns)
            if u.label is not None
        ]
    if limit is not None and limit < len(utterances):
        chosen = sorted(random.Random(seed).sample(range(len(utterances)), limit))
        utterances = [utterances[i] for i in chosen]
    return get_label_set(name), utterances


def label_spec(labels: LabelSet) -> str | list[str]:
    """How to pass ``labels`` on: a registered set by name, any other by its list of labels.

    By name, a registered set keeps its merges (iemocap4 counts "excited" as happy).

    >>> label_spec(get_label_set("iemocap4")), label_spec(get_label_set(["calm", "angry"]))
    ('iemocap4', ['calm', 'angry'])
    """
    return labels.name if LABEL_SETS.get(labels.name) == labels else list(labels.labels)


def prompt_speaker(utterance) -> str | None:
    """The speaker name a prompt shows: only in conversations, without the ``corpus/`` prefix of the id.

    >>> from emollm.data import Utterance
    >>> prompt_speaker(Utterance(id="1", transcript="Hi", speaker="meld/Ross", dialogue_id="d1"))
    'Ross'
    >>> prompt_speaker(Utterance(id="2", transcript="Hi", speaker="ravdess/01")) is None
    True
    """
    if not utterance.speaker or not utterance.dialogue_id:
        return None
    return utterance.speaker.split("/", 1)[-1]


def as_turns(context) -> list[Turn]:
    """Earlier turns as :class:`~emollm.data.Turn`: from turns, ``{"speaker", "text"}`` dicts or pairs.

    >>> as_turns([("Ann", "Hi"), {"speaker": "Bob", "text": "Hello"}])
    [Turn(speaker='Ann', text='Hi'), Turn(speaker='Bob', text='Hello')]
    """
    turns = []
    for turn in context or []:
        if isinstance(turn, Turn):
            turns.append(turn)
        elif isinstance(turn, dict) and {"speaker", "text"} <= set(turn):
            turns.append(Turn(str(turn["speaker"]), str(turn["text"])))
        elif isinstance(turn, (tuple, list)) and len(turn) == 2:
            turns.append(Turn(str(turn[0]), str(turn[1])))
        else:
            raise ConfigError(
                f"a context turn must be a Turn, a {{'speaker', 'text'}} dict or a (speaker, text) pair; "
                f"got {turn!r}"
            )
    return turns


# -- how it was said, as words ------------------------------------------------------------------------------


def describe_utterances(
    utterances: Sequence,
    *,
    todo: Sequence | None = None,
    normalizer="speaker",
    style: str = "vowel",
    max_vowels: int | None = None,
    max_words: int | None = None,
    workers: int = 1,
    progress: bool = True,
):
    """Prosody descriptions of ``todo`` (default: all ``utterances``), keyed by utterance id.

    Features come from :func:`emollm.prosody.extract_many` with the on-disk cache, so a second run costs
    nothing.

    Args:
        utterances: The whole set the statistics are fitted on (e.g. a training split, or every evaluated
            utterance: per-speaker statistics need no labels).
        todo: The utterances to describe (a resumed evaluation describes only what it has not predicted).
        normalizer: ``"speaker"`` fits a :class:`~emollm.prosody.normalize.ProsodyNormalizer` on every
            utterance with audio; ``"none"`` describes each utterance relative to itself; a path loads a
            saved normaliser; a fitted normaliser is used as is.
        style, max_vowels, max_words: As for :func:`emollm.prosody.describe.describe`.
        workers: Processes for prosody extraction.
        progress: Show a progress bar.

    Returns:
        ``(descriptions, notes, normalizer)``: id -> text (None where there is no audio or extraction
        failed), id -> what was degraded, and the normaliser used (None for ``"none"``).

    Raises:
        ConfigError: a ``normalizer`` that is none of the accepted values.
    """
    from emollm.modeling.base import cache_dir
    from emollm.prosody.describe import describe_features
    from emollm.prosody.normalize import ProsodyNormalizer
    from emollm.prosody.pipeline import extract_many

    todo = utterances if todo is None else todo
    known = str(normalizer) in NORMALIZERS
    if isinstance(normalizer, (str, Path)) and not known and not Path(normalizer).is_file():
        raise ConfigError(
            f"normalizer must be 'speaker', 'none' or the path of a normaliser JSON; "
            f"{str(normalizer)!r} is none of these"
        )
    with_audio = [u for u in utterances if u.has_audio]
    if not with_audio:
        logger.warning("no utterance has audio: the prompts say no audio measurements are available")
        return {}, {u.id: ["no audio: no prosody description"] for u in todo}, None
    batch = extract_many(with_audio, cache_dir=cache_dir() / "prosody", workers=workers, progress=progress)
    features = {u.id: f for u, f in zip(with_audio, batch.features)}
    notes = {
        u.id: [f"prosody failed: {batch.errors[i]}"] for i, u in enumerate(with_audio) if i in batch.errors
    }
    if normalizer == "speaker":
        fitted = [f for f in batch.features if f is not None]
        normalizer = ProsodyNormalizer().fit(fitted) if fitted else None
    elif normalizer == "none":
        normalizer = None
    elif isinstance(normalizer, (str, Path)):
        normalizer = ProsodyNormalizer.load(normalizer)
    descriptions = {}
    for utt in todo:
        feats = features.get(utt.id)
        descriptions[utt.id] = None
        if feats is not None:
            text = describe_features(
                feats,
                normalizer=normalizer,
                speaker=utt.speaker,
                style=style,
                max_vowels=max_vowels,
                max_words=max_words,
            )
            descriptions[utt.id] = text or None
            notes.setdefault(utt.id, []).extend(feats.notes)
        elif not utt.has_audio:
            notes.setdefault(utt.id, []).append("no audio: no prosody description")
    return descriptions, notes, normalizer


def check_audio_files(utterances: Sequence) -> None:
    """Refuse utterances whose ``audio_path`` is not a readable file, before any extraction or model load.

    A manifest that points at missing files would otherwise be evaluated from the words alone, with one note
    per row and exit status 0. Utterances without an ``audio_path`` (text only, or in-memory audio) pass.

    Raises:
        DataError: naming how many files are missing or are folders, the first few, and the fix.

    >>> from emollm.data import Utterance
    >>> check_audio_files([Utterance(id="a", audio_path="/no/such/file.wav")])
    Traceback (most recent call last):
    ...
    emollm.errors.DataError: 1 of 1 audio files do not exist (a: '/no/such/file.wav'); ...
    """
    paths = [(u.id, Path(u.audio_path)) for u in utterances if u.audio_path is not None]
    problems = {
        "do not exist": [(i, p) for i, p in paths if not p.exists()],
        "are folders, not files": [(i, p) for i, p in paths if p.is_dir()],
    }
    found = [(what, items) for what, items in problems.items() if items]
    if found:
        parts = [
            f"{len(items)} of {len(paths)} audio files {what} ("
            + ", ".join(f"{i}: {str(p)!r}" for i, p in items[:3])
            + (", ..." if len(items) > 3 else "")
            + ")"
            for what, items in found
        ]
        raise DataError(
            f"{'; '.join(parts)}; fix the audio paths (a manifest's relative paths are read from its own "
            f"folder), or ask for no audio (evaluate --no-prosody with a text-only model)"
        )


# -- how it sounded, as encoder frames ----------------------------------------------------------------------


def encode_utterances(
    lm, utterances: Sequence, *, todo: Sequence | None = None, refit: bool = True, progress: bool = True
):
    """Encoder frames of every adapter of ``lm`` for ``todo`` (default: all ``utterances``).

    Frames are cached on disk (:func:`emollm.modeling.encoders.encode_cached`). An adapter with
    ``normalize="speaker"`` gets its frames z-scored per speaker: with ``refit``, by statistics fitted here
    on all ``utterances`` (labels are never read; a resumed evaluation fits the same); without, by ``lm``'s
    own (a checkpoint's). ``lm`` is not changed.

    Returns:
        ``(frames, normalizers)``: ``{adapter key: {utterance id: (T, D) tensor}}`` as the projector reads
        them, and ``{adapter key: FrameNormalizer}`` used (fitted here or ``lm``'s), to save with a
        checkpoint. The key is the modality, or the adapter's name when a modality has several.

    Raises:
        DataError: an utterance without an audio file for a model that hears audio.
        ConfigError: a modality other than audio (the corpora hold no video), or a normalising adapter with
            neither ``refit`` nor statistics of its own.
    """
    from emollm.modeling.base import cache_dir
    from emollm.modeling.encoders import encode_cached
    from emollm.modeling.frame_norm import FrameNormalizer

    wanted = {u.id for u in (utterances if todo is None else todo)}
    frames: dict[str, dict] = {}
    normalizers = dict(lm.frame_normalizers)
    for key, modality in lm.adapter_modalities.items():
        if modality != "audio":
            raise ConfigError(f"utterances feed audio adapters only; this model also has {modality!r}")
        missing = [u.id for u in utterances if u.audio_path is None]
        if missing:
            raise DataError(
                f"{len(missing)} utterances have no audio file (e.g. {missing[0]}); the model needs it"
            )
        check_audio_files(utterances)
        # per-speaker statistics need every utterance's frames; otherwise only those asked for
        refitting = refit and lm.normalizes(key)
        needed = [u for u in utterances if u.id in wanted or refitting]
        raw = encode_cached(
            lm.encoders[key],
            lm.encoder_inputs(key, [u.audio_path for u in needed], [u.transcript for u in needed]),
            cache_dir=cache_dir() / "features",
            progress=progress,
        )
        speakers = [u.speaker for u in needed]
        if refitting and raw:
            normalizers[key] = FrameNormalizer.fit(raw, speakers)
        normalized = lm.normalize_frames(key, raw, speakers, normalizers)
        frames[key] = {u.id: clip for u, clip in zip(needed, normalized) if u.id in wanted}
    return frames, normalizers


def frames_of(frames: Mapping[str, Mapping], utterance_id: str) -> dict:
    """One utterance's frames, ``{adapter key: tensor}``, from :func:`encode_utterances`' mapping."""
    return {key: by_id[utterance_id] for key, by_id in frames.items()}


# -- the prompt ---------------------------------------------------------------------------------------------


class PromptBuilder:
    """Template + label set + context window + placeholders -> the prompt a model reads.

    The template file is read once (an edit later does not change this builder's prompts; its digest,
    :attr:`template_sha256`, names exactly what it renders).

    Data is not markup: the transcript, the context turns (speakers and text), the speaker and the prosody
    description go through :func:`emollm.prompting.neutralize` for ``tokenizer``, so a data row cannot
    produce a chat-control token (``<|im_end|>``), emollm's answer tags or a pseudo-token slot
    (``<|audio|>``); the transcript, speakers and turns are kept to one line each. Instructions written in
    plain words remain possible (see :mod:`emollm.prompting`).

    Args:
        tokenizer: The model's tokenizer (its chat template wraps the message); None, or one without a chat
            template, gives the plain message and a newline.
        strategy: Template name (``minimal``, ``acoustic``, ``cot``) or path to a ``.jinja`` file.
        labels: Label-set name, :class:`~emollm.labels.LabelSet` or list of labels.
        context_turns: Show at most this many earlier turns; None shows all that are given.
        system: System message; None for none.
        placeholders: Template variables of the pseudo-token slots, ``{"audio": "<|audio|>"}`` for a model
            with an audio adapter (:attr:`emollm.modeling.EmotionLM.placeholders`).

    Raises:
        ConfigError: unknown strategy (listing the shipped ones), bad label set, negative ``context_turns``.
    """

    def __init__(
        self,
        tokenizer,
        strategy: str = "acoustic",
        labels: str | LabelSet | Sequence[str] = "ravdess8",
        *,
        context_turns: int | None = None,
        system: str | None = SYSTEM_PROMPT,
        placeholders: Mapping[str, str] | None = None,
    ):
        if context_turns is not None and context_turns < 0:
            raise ConfigError(f"context_turns must be >= 0 or None, got {context_turns}")
        self._template, self.template_sha256 = read_template(strategy)
        self.tokenizer = tokenizer
        self.strategy = strategy
        self.labels = get_label_set(labels)
        self.context_turns = context_turns
        self.system = system
        self.placeholders = dict(placeholders or {})

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities whose pseudo-tokens the prompts carry."""
        return tuple(self.placeholders)

    @property
    def asks_for_tags(self) -> bool:
        """Whether the template asks for ``<think>``/``<answer>`` tags.

        Then score mode prefills ``<answer>``, GRPO's format reward can be earned and an SFT ``reasoning``
        target is possible.
        """
        return bool(answer_prefix(self.message("x")))

    def _fields(self, transcript, context, speaker, prosody) -> dict:
        """What the template renders, beside the template itself."""
        return {
            "transcript": transcript,
            "labels": self.labels,
            "context": as_turns(context),
            "context_turns": self.context_turns,
            "speaker": speaker,
            "prosody": prosody,
            **self.placeholders,
        }

    def message(self, transcript: str | None = None, context=None, speaker=None, prosody=None) -> str:
        """The user message alone (no chat formatting), the data fields neutralised for :attr:`tokenizer`."""
        fields = self._fields(transcript, context, speaker, prosody)
        return render_user_message(self._template, tokenizer=self.tokenizer, **fields)

    def prompt(
        self,
        transcript: str | None = None,
        context=None,
        speaker: str | None = None,
        prosody: str | None = None,
        *,
        for_scoring: bool = False,
    ) -> str:
        """The full prompt (chat template included); ``for_scoring`` appends the answer prefix."""
        fields = self._fields(transcript, context, speaker, prosody)
        return render_prompt(
            self.tokenizer, self._template, system=self.system, for_scoring=for_scoring, **fields
        )

    def for_utterance(self, utterance, prosody: str | None = None, *, for_scoring: bool = False) -> str:
        """The prompt of an :class:`~emollm.data.Utterance` with the given prosody description.

        It shows the utterance's words, its context and, in a conversation, its speaker's name.
        """
        return self.prompt(
            utterance.transcript,
            utterance.context,
            prompt_speaker(utterance),
            prosody,
            for_scoring=for_scoring,
        )
