"""Does the aligner's plausibility check catch wrong transcripts, and how often does it flag right ones?

python benchmarks/alignment_plausibility.py [--data-root ../shared/data] [--limit 0] [--seed 0]
    [--out benchmarks/results/alignment_plausibility.json]

Every RAVDESS clip is force-aligned (:func:`emollm.prosody.align.align_transcript`, one process) four times:

* ``right``: its own sentence;
* ``other``: the other RAVDESS sentence ("Kids are talking by the door" <-> "Dogs are sitting by the door":
  four of six words shared, the hard case);
* ``unrelated``: "The printer is out of paper again today" (the easy case);
* ``cut``: the first half of the clip with its own sentence (what a truncated recording gives when no
  header is there to tell, e.g. an array).

Each alignment gets :func:`~emollm.prosody.align.check_alignment`'s verdict, and
:func:`~emollm.prosody.align.align` acts on it: ``no path`` (pocketsphinx found none) and ``implausible``
fall back to syllable nuclei (or raise), ``doubtful`` keeps the alignment with a note, ``plausible`` keeps
it silently. Flagged: any but plausible.

Thresholds are chosen on the training actors (01-14) and only applied to the dev actors (15-18): the script
prints, for each measure, the threshold that flags at most 0.5 % / 1 % / 2 % of the train actors' right
transcripts and what it catches there, beside the library's fixed thresholds and their rates on both splits.
The measures: the words' mean fit and the mean fit of the 3 worst phones (``Phone.fit``: acoustic score per
frame minus a free phone loop's), the share of vowels at pocketsphinx's 30 ms minimum, and the share of the
loud frames (within 25 dB of the loudest) that lie inside words. The JSON keeps the tables, each measure's
quantiles per split and transcript, and the misses (right transcripts flagged, wrong ones kept) clip by clip.
One process, 4.5-7 minutes for all 1080 clips on 2 cores; ``--limit`` takes a seeded subset spread over
the actors.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from _common import spread_subset, write_result

from emollm.audio import Audio, load_audio
from emollm.data import RAVDESS_SPLITS, load_corpus
from emollm.errors import AlignmentError
from emollm.prosody.align import (
    DOUBTFUL_PHONE_FIT,
    IMPLAUSIBLE_WORD_FIT,
    align_transcript,
    check_alignment,
    speech_level,
)

KIDS, DOGS = "Kids are talking by the door", "Dogs are sitting by the door"
UNRELATED = "The printer is out of paper again today"
CONDITIONS = ("right", "other", "unrelated", "cut")
OUTCOMES = ("no path", "implausible", "doubtful", "plausible")
TRAIN = set(RAVDESS_SPLITS["train"])
RATES = (0.005, 0.01, 0.02)
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
NAME = "alignment_plausibility"


def speech_in_words(audio: Audio, alignment) -> float:
    """Share of the loud 10 ms frames (within 25 dB of the 99th-percentile level) inside a word."""
    hop = audio.sample_rate // 100
    n = len(audio.samples) // hop
    level = 10 * np.log10(
        np.mean(audio.samples[: n * hop].reshape(n, hop).astype(np.float64) ** 2, 1) + 1e-12
    )
    loud = np.flatnonzero(level >= np.percentile(level, 99) - 25)
    inside = np.zeros(n, bool)
    for word in alignment.words:
        inside[int(round(word.start / 0.01)) : int(round(word.end / 0.01))] = True
    return float(inside[loud].mean()) if len(loud) else float("nan")


def assess(audio: Audio, transcript: str) -> dict:
    try:
        alignment = align_transcript(audio, transcript)
    except AlignmentError:
        return {"outcome": "no path"}
    check = check_alignment(alignment)
    row = {
        "outcome": check.verdict,
        "word_fit": round(check.word_fit, 2),
        "worst_phone_fit": round(check.worst_phone_fit, 2),
        "vowels_at_minimum": round(check.vowels_at_minimum, 3),
        "speech_in_words": round(speech_in_words(audio, alignment), 3),
    }
    if check.verdict != "plausible":
        row["worst_words"] = check.worst_words
    return row


# measure -> (direction: +1 when low values mean wrong, -1 when high values do)
MEASURES = {"word_fit": 1, "worst_phone_fit": 1, "vowels_at_minimum": -1, "speech_in_words": 1}


def auc(right: np.ndarray, wrong: np.ndarray, sign: int) -> float:
    """Probability that a wrong transcript's value is more suspicious than a right one's (ties count half)."""
    r, w = sign * right[:, None], sign * wrong[None, :]
    return float(np.mean((w < r) + 0.5 * (w == r)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=0, help="clips, spread over actors (0: all 1080)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip subset")
    parser.add_argument(
        "--out", default="benchmarks/results/alignment_plausibility.json", help="JSON results"
    )
    args = parser.parse_args()

    utterances = spread_subset(load_corpus("ravdess", "all", data_root=args.data_root), args.limit, args.seed)
    rows = []
    levels = []
    started = time.perf_counter()
    for index, u in enumerate(utterances):
        audio = load_audio(u.audio_path)
        levels.append(speech_level(audio))
        half = Audio(audio.samples[: len(audio.samples) // 2], audio.sample_rate, source=audio.source)
        split = "train" if u.meta["actor"] in TRAIN else "dev"
        other = DOGS if u.transcript == KIDS else KIDS
        for condition, clip, transcript in (
            ("right", audio, u.transcript),
            ("other", audio, other),
            ("unrelated", audio, UNRELATED),
            ("cut", half, u.transcript),
        ):
            rows.append({"id": u.id, "split": split, "condition": condition, **assess(clip, transcript)})
        if (index + 1) % 100 == 0:
            print(f"{index + 1}/{len(utterances)} clips, {time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started

    table = {}
    for split in ("train", "dev"):
        for condition in CONDITIONS:
            subset = [r for r in rows if r["split"] == split and r["condition"] == condition]
            counts = Counter(r["outcome"] for r in subset)
            n = len(subset)
            table[f"{split}/{condition}"] = {
                "clips": n,
                **{outcome: counts[outcome] for outcome in OUTCOMES},
                "fallback_share": (counts["no path"] + counts["implausible"]) / n if n else float("nan"),
                "flagged_share": (n - counts["plausible"]) / n if n else float("nan"),
            }

    def values(split: str, condition: str, key: str) -> np.ndarray:
        return np.array(
            [
                r[key]
                for r in rows
                if r["split"] == split and r["condition"] == condition and key in r and np.isfinite(r[key])
            ]
        )

    separation = {}
    for key, sign in MEASURES.items():
        right = values("train", "right", key)
        entry = {"auc": {c: auc(right, values("train", c, key), sign) for c in ("other", "unrelated")}}
        for rate in RATES:  # the threshold the train actors choose, and what it catches there and on dev
            threshold = float(np.quantile(sign * right, rate)) * sign
            flagged = {}
            for split in ("train", "dev"):
                for condition in ("right", "other", "unrelated"):
                    v = values(split, condition, key)
                    flagged[f"{split}/{condition}"] = (
                        float(np.mean(sign * v < sign * threshold)) if len(v) else 0
                    )
            entry[f"at_{rate:g}"] = {"threshold": threshold, "flagged": flagged}
        separation[key] = entry

    n = len(utterances)
    print(f"\n{n} RAVDESS clips x {len(CONDITIONS)} transcripts in {seconds:.0f} s (1 process)\n")
    print(
        f"Library thresholds: implausible when the words' fit < {IMPLAUSIBLE_WORD_FIT:g}, doubtful when "
        f"the 3 worst phones' fit < {DOUBTFUL_PHONE_FIT:g}\n"
    )
    print("| actors | transcript | clips | no path | implausible | doubtful | fell back | flagged |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key, t in table.items():
        split, condition = key.split("/")
        print(
            f"| {split} | {condition} | {t['clips']} | {t['no path']} | {t['implausible']} | "
            f"{t['doubtful']} | {100 * t['fallback_share']:.1f} % | {100 * t['flagged_share']:.1f} % |"
        )
    print("\nEach measure alone (train actors choose the threshold; AUC right vs wrong on train):\n")
    print(
        "| measure | AUC other | AUC unrelated | right flagged (train) | threshold | other train / dev "
        "| unrelated train / dev | right dev |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, entry in separation.items():
        for rate in RATES:
            chosen = entry[f"at_{rate:g}"]
            f = chosen["flagged"]
            print(
                f"| {key} | {entry['auc']['other']:.3f} | {entry['auc']['unrelated']:.3f} | "
                f"{100 * rate:g} % | {chosen['threshold']:.2f} | "
                f"{100 * f['train/other']:.1f} / {100 * f['dev/other']:.1f} % | "
                f"{100 * f['train/unrelated']:.1f} / {100 * f['dev/unrelated']:.1f} % | "
                f"{100 * f['dev/right']:.1f} % |"
            )
    doubtful_words = Counter(
        w for r in rows if r["condition"] == "right" and r["outcome"] != "plausible" for w in r["worst_words"]
    )
    print(f"\nwords named in flagged right-transcript alignments: {dict(doubtful_words.most_common(8))}")
    print(f"speech level of the clips (loudest 10 ms frames): {min(levels):.1f} to {max(levels):.1f} dBFS")

    write_result(
        args.out,
        {
            "clips": n,
            "seconds": seconds,
            "thresholds": {
                "implausible_word_fit": IMPLAUSIBLE_WORD_FIT,
                "doubtful_phone_fit": DOUBTFUL_PHONE_FIT,
            },
            "table": table,
            "separation": separation,
            "speech_level_dbfs": {"min": min(levels), "max": max(levels)},
            "flagged_right_words": dict(doubtful_words.most_common()),
            "quantiles": {  # of each measure per split and transcript, to re-choose thresholds from
                f"{split}/{condition}": {
                    key: dict(zip(map(str, QUANTILES), np.percentile(v, QUANTILES).round(3).tolist()))
                    for key in MEASURES
                    if len(v := values(split, condition, key))
                }
                for split in ("train", "dev")
                for condition in CONDITIONS
            },
            # the misses: right transcripts flagged, wrong ones (or cut clips) kept as plausible
            "misses": [r for r in rows if (r["condition"] == "right") != (r["outcome"] == "plausible")],
        },
    )


if __name__ == "__main__":
    main()
