"""Utterance-level prosody as one vector: the measures of :class:`~emollm.prosody.ProsodyFeatures`.

The frame encoders give the projector a sequence; this one gives it the same numbers a linear probe reads
(docs/results.md, "Does prosody carry emotion?"): every utterance measure and the vowel aggregates of
:meth:`ProsodyFeatures.flat() <emollm.prosody.features.ProsodyFeatures.flat>` (52 values: rate, pauses, F0
level and spread, intensity, voice quality, vowel durations and pitch movements), as one ``(1, 52)`` frame.
With the adapter's ``normalize: speaker`` they are z-scored per speaker without labels
(:mod:`emollm.modeling.frame_norm`), which is what made the probe work across speakers.

Vowel measures need the words: give each input as ``{"audio": ..., "transcript": ...}`` (the training
recipes, the harness and :class:`~emollm.EmotionReasoner` do); a bare path or array is measured from
syllable nuclei, as :func:`emollm.extract_prosody` does without a transcript. Undefined measures (an
utterance without a voiced vowel has no vowel pitch) stay NaN: the frame normaliser skips them in its
statistics and the projectors read them as 0 (the speaker's mean after normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields

import numpy as np
import torch

from emollm.errors import ConfigError
from emollm.modeling.encoders.common import _as_audio, _as_list


def functional_names() -> tuple[str, ...]:
    """The 52 names of :meth:`ProsodyFeatures.flat`, in its order (the vector's columns).

    >>> names = functional_names()
    >>> len(names), names[0], names[-1]
    (52, 'utt_duration', 'stressed_vowel_voiced_fraction_mean')
    """
    from emollm.prosody.features import VOWEL_AGGREGATES, UtteranceMeasures

    names = [f"utt_{f.name}" for f in fields(UtteranceMeasures)]
    names += [f"vowel_{m}_{s}" for m in VOWEL_AGGREGATES for s in ("mean", "std", "min", "max")]
    names += [f"stressed_vowel_{m}_mean" for m in VOWEL_AGGREGATES]
    return tuple(names)


class ProsodyFunctionalsEncoder(torch.nn.Module):
    """One ``(1, 52)`` vector of prosodic functionals per utterance; no weights.

    Args:
        gender: ``"male"`` / ``"female"`` pitch range preset for every input, or None (adaptive).

    >>> from emollm.prosody.synth import synthesize
    >>> audio, _ = synthesize("Kids are talking by the door")
    >>> encoder = ProsodyFunctionalsEncoder()
    >>> (vector,) = encoder.encode([{"audio": audio, "transcript": "Kids are talking by the door"}])
    >>> tuple(vector.shape), float(vector[0, encoder.feature_names.index("utt_n_vowels")])
    ((1, 52), 7.0)
    """

    name = "prosody_functionals"
    takes_transcript = True  # inputs may be {"audio", "transcript"} dicts

    def __init__(self, gender: str | None = None):
        super().__init__()
        if gender not in (None, "male", "female"):
            raise ConfigError(f"gender must be 'male', 'female' or None, got {gender!r}")
        self.gender = gender
        self.feature_names = functional_names()
        self.output_dim = len(self.feature_names)
        self.eval()

    def train(self, mode: bool = True) -> ProsodyFunctionalsEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def settings(self) -> dict:
        """The keyword arguments that rebuild this encoder with :func:`build_encoder`."""
        return {"gender": self.gender}

    @torch.no_grad()
    def encode(self, inputs: Sequence) -> list[torch.Tensor]:
        """One float32 ``(1, 52)`` tensor per input, NaN where a measure is undefined.

        An input is a path, an array or an ``Audio``, or a dict with ``audio`` and ``transcript``.

        Raises:
            AudioError: an input cannot be loaded or analysed. ConfigError: a dict without ``audio``.
        """
        from emollm.prosody.pipeline import extract_prosody

        out = []
        for item in _as_list(inputs):
            transcript = None
            if isinstance(item, Mapping):
                if item.get("audio") is None:
                    raise ConfigError(
                        f"a {self.name} input dict needs 'audio' (and 'transcript'), got {sorted(item)}"
                    )
                item, transcript = item["audio"], item.get("transcript")
            features = extract_prosody(_as_audio(item), transcript or None, gender=self.gender)
            flat = features.flat()
            vector = np.array([flat[name] for name in self.feature_names], dtype=np.float32)
            out.append(torch.from_numpy(vector).unsqueeze(0))
        return out
