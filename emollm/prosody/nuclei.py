"""Where are the vowels without a transcript? Syllable nuclei from intensity peaks (de Jong & Wempe, 2009).

:func:`emollm.prosody.align.align` uses :func:`detect_nuclei` when there is no transcript or TextGrid, and
when forced alignment fails. Each nucleus becomes a vowel labelled
:data:`~emollm.prosody.alignment.NUCLEUS` (``"NUC"``) with no word, in an
:class:`~emollm.prosody.alignment.Alignment` whose ``method`` is ``"nuclei"``.
"""

from __future__ import annotations

import numpy as np

from emollm.audio import Audio
from emollm.prosody.alignment import NUCLEUS, Alignment, Phone


def detect_nuclei(
    audio: Audio, *, silence_db: float = -25.0, min_dip_db: float = 2.0, span_db: float = 6.0
) -> Alignment:
    """Find syllable nuclei without a transcript (de Jong & Wempe, 2009) and treat each as a vowel.

    Peaks of intensity that are (1) above ``silence_db`` relative to the 99th-percentile intensity,
    (2) separated from the previous peak by a dip of at least ``min_dip_db`` and (3) voiced are nuclei.
    Each nucleus spans the voiced frames around its peak that stay within ``span_db`` of it, bounded by
    the intensity minima between neighbouring peaks.

    Returns:
        An alignment with ``method == "nuclei"``: vowels labelled ``"NUC"``, no words.

    >>> from emollm.prosody.synth import synthesize
    >>> audio, truth = synthesize("Kids are talking by the door")
    >>> nuclei = detect_nuclei(audio)
    >>> nuclei.method, len(nuclei.vowels), len(truth.vowels), {v.phone for v in nuclei.vowels}
    ('nuclei', 8, 7, {'NUC'})
    """
    import parselmouth

    sound = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=audio.sample_rate)
    intensity = sound.to_intensity(minimum_pitch=50.0, time_step=0.01)
    times = intensity.xs()
    db = intensity.values[0].copy()
    pitch = sound.to_pitch_ac(time_step=0.01, pitch_floor=60.0, pitch_ceiling=600.0)
    f0 = np.interp(times, pitch.xs(), pitch.selected_array["frequency"], left=0.0, right=0.0)
    voiced = f0 > 0
    threshold = max(float(np.percentile(db, 99)) + silence_db, float(np.min(db)))
    peaks = [
        i for i in range(1, len(db) - 1) if db[i] >= db[i - 1] and db[i] > db[i + 1] and db[i] > threshold
    ]
    kept: list[int] = []
    for i in peaks:
        if kept and db[i] - db[kept[-1] : i + 1].min() < min_dip_db:
            if db[i] > db[kept[-1]] and db[kept[-1] : i + 1].min() >= db[kept[-1]] - min_dip_db:
                kept[-1] = i  # same syllable, higher peak
            continue
        kept.append(i)
    kept = [i for i in kept if voiced[i]]
    phones = []
    for k, i in enumerate(kept):
        lo_bound = kept[k - 1] + int(np.argmin(db[kept[k - 1] : i + 1])) if k else 0
        hi_bound = i + int(np.argmin(db[i : kept[k + 1] + 1])) if k + 1 < len(kept) else len(db) - 1
        lo = hi = i
        while lo - 1 > lo_bound and voiced[lo - 1] and db[lo - 1] >= db[i] - span_db:
            lo -= 1
        while hi + 1 < hi_bound and voiced[hi + 1] and db[hi + 1] >= db[i] - span_db:
            hi += 1
        start = max(float(times[lo]) - 0.005, 0.0)
        end = min(float(times[hi]) + 0.005, audio.duration)
        phones.append(Phone(phone=NUCLEUS, start=start, end=end, label="nucleus"))
    return Alignment(
        method="nuclei",
        duration=audio.duration,
        phones=phones,
        notes=["vowels are syllable nuclei: intensity peaks in voiced speech (de Jong & Wempe 2009)"],
    )
