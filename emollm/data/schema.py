"""The one record every reader returns, and its conversion to a ``datasets.Dataset``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emollm.errors import DataError


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation, shown to the model as context."""

    speaker: str
    text: str


@dataclass
class Utterance:
    """One labelled (or unlabelled) utterance.

    Attributes:
        id: Unique within its corpus, e.g. ``"ravdess/03-01-05-01-01-01-12"``.
        transcript: What was said, or None when unknown.
        label: Canonical label of the corpus's label set (see :mod:`emollm.labels`), or None.
        audio_path: Path of the audio file, or None.
        audio: A mono waveform instead of a file, shape ``(num_samples,)``; needs ``sample_rate``.
        sample_rate: Sample rate of ``audio`` in Hz.
        speaker: Speaker id, unique within the corpus (``"ravdess/12"``, ``"meld/Ross"``).
        gender: ``"male"``, ``"female"`` or None.
        dialogue_id: Conversation the utterance belongs to, or None.
        turn: Position of the utterance in its dialogue (0-based), or None.
        context: Earlier turns of the same dialogue, oldest first (readers keep all; prompts cut to N).
        label_distribution: Annotator votes as label -> share (sums to 1), or None.
        meta: Corpus-specific extras (intensity, statement, session, sentiment, ...), JSON-serialisable.
    """

    id: str
    transcript: str | None = None
    label: str | None = None
    audio_path: str | None = None
    audio: np.ndarray | None = field(default=None, repr=False)
    sample_rate: int | None = None
    speaker: str | None = None
    gender: str | None = None
    dialogue_id: str | None = None
    turn: int | None = None
    context: list[Turn] = field(default_factory=list)
    label_distribution: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.id:
            raise DataError("an Utterance needs a non-empty id")
        if self.audio is not None:
            self.audio = np.asarray(self.audio, dtype=np.float32)
            if self.audio.ndim != 1:
                raise DataError(
                    f"utterance {self.id!r}: audio must be mono with shape (num_samples,), "
                    f"got shape {self.audio.shape}"
                )
            if not self.sample_rate or self.sample_rate <= 0:
                raise DataError(
                    f"utterance {self.id!r}: an audio array needs a positive sample_rate, "
                    f"got {self.sample_rate!r}"
                )
        if self.label_distribution is not None:
            total = sum(self.label_distribution.values())
            if not self.label_distribution or abs(total - 1.0) > 1e-3:
                raise DataError(
                    f"utterance {self.id!r}: label_distribution must be non-empty and sum to 1, "
                    f"got {self.label_distribution} (sum {total:.4f})"
                )

    @property
    def has_audio(self) -> bool:
        """Whether the utterance carries audio, as a file or an array."""
        return self.audio_path is not None or self.audio is not None

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON- and Arrow-friendly dict (the audio array as a list of floats, meta as JSON)."""
        return {
            "id": self.id,
            "transcript": self.transcript,
            "label": self.label,
            "audio_path": self.audio_path,
            "audio": None if self.audio is None else self.audio.tolist(),
            "sample_rate": self.sample_rate,
            "speaker": self.speaker,
            "gender": self.gender,
            "dialogue_id": self.dialogue_id,
            "turn": self.turn,
            "context": [{"speaker": t.speaker, "text": t.text} for t in self.context],
            "label_distribution": None
            if self.label_distribution is None
            else json.dumps(self.label_distribution, sort_keys=True),
            "meta": json.dumps(self.meta, sort_keys=True),
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Utterance:
        """Inverse of :meth:`to_dict` (accepts a ``datasets`` row)."""
        dist = row.get("label_distribution")
        meta = row.get("meta")
        return cls(
            id=row["id"],
            transcript=row.get("transcript"),
            label=row.get("label"),
            audio_path=row.get("audio_path"),
            audio=None if row.get("audio") is None else np.asarray(row["audio"], dtype=np.float32),
            sample_rate=row.get("sample_rate"),
            speaker=row.get("speaker"),
            gender=row.get("gender"),
            dialogue_id=row.get("dialogue_id"),
            turn=row.get("turn"),
            context=[Turn(t["speaker"], t["text"]) for t in (row.get("context") or [])],
            label_distribution=json.loads(dist) if isinstance(dist, str) else dist,
            meta=json.loads(meta) if isinstance(meta, str) else (meta or {}),
        )


def to_dataset(utterances: Sequence[Utterance]):
    """Turn utterances into a ``datasets.Dataset`` with one column per :class:`Utterance` field.

    ``label_distribution`` and ``meta`` are JSON strings (their keys differ between corpora);
    :meth:`Utterance.from_dict` reads a row back.
    """
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "transcript": datasets.Value("string"),
            "label": datasets.Value("string"),
            "audio_path": datasets.Value("string"),
            "audio": datasets.Sequence(datasets.Value("float32")),
            "sample_rate": datasets.Value("int32"),
            "speaker": datasets.Value("string"),
            "gender": datasets.Value("string"),
            "dialogue_id": datasets.Value("string"),
            "turn": datasets.Value("int32"),
            "context": [{"speaker": datasets.Value("string"), "text": datasets.Value("string")}],
            "label_distribution": datasets.Value("string"),
            "meta": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list([u.to_dict() for u in utterances], features=features)
