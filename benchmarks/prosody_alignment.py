"""Forced alignment on real speech: does pocketsphinx find the expected vowels of every RAVDESS clip?

python benchmarks/prosody_alignment.py [--data-root ../shared/data] [--limit 0] [--workers 2]
    [--cache-dir ~/.cache/emollm/bench] [--out benchmarks/results/prosody_alignment.json]

RAVDESS has two fixed sentences, so the vowels every clip should have are known. The expected sequence is
each word's first CMU dictionary pronunciation (:func:`emollm.prosody.pronunciation.pronounce`): "Kids are
talking by the door" -> IH AA AO IH AY AH AO and "Dogs are sitting by the door" -> AA AA IH IH AY AH AO
("dogs" is D AA1 G Z first in the CMU dictionary). pocketsphinx may choose another pronunciation the
dictionary also lists ("are" as ER, "dogs" as AO, "the" as IY), so the table gives two match rates: **exact**
(the expected symbols, in order) and **any dictionary variant** (each vowel is one the word has in some CMU
pronunciation, in order, and the count is right).

Forced alignment always returns every word of the transcript, so "any variant" is close to 100 % by
construction whenever pocketsphinx succeeds; it says nothing about where the boundaries are. Two indirect
signs of misplaced vowels are reported with it: vowels at the aligner's 30 ms minimum (3 frames), and vowels
with no voiced pitch frame (a vowel is voiced; an unvoiced one is likely on a consonant or in silence).

Clips go through :func:`~emollm.prosody.pipeline.extract_many` (the whole pipeline, with its on-disk cache
under ``--cache-dir/prosody-<hash of the emollm prosody code>``, shared with ``prosody_probe.py``), so the
alignment, its method and the notes are those a user gets. Reported: how many clips pocketsphinx aligned
(vs the syllable-nuclei fallback), the match rates overall and per emotion, the substitutions seen, vowel
durations (overall, per vowel, per emotion) and the notes.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import numpy as np
from _common import emollm_source_hash, spread_subset, write_result

from emollm.data import load_corpus
from emollm.labels import get_label_set
from emollm.prosody.pipeline import extract_many
from emollm.prosody.pronunciation import cmu_lookup, pronounce, tokenize

DEFAULT_CACHE = Path("~/.cache/emollm/bench").expanduser()
PERCENTILES = (5, 25, 50, 75, 95)


def expected_vowels(transcript: str) -> tuple[list[str], list[set[str]]]:
    """The vowels of each word's first pronunciation, and per position the vowels any variant allows."""
    exact: list[str] = []
    allowed: list[set[str]] = []
    for word in tokenize(transcript)[0]:
        first = [p.rstrip("012") for p in pronounce(word)[0] if p[-1].isdigit()]
        variants = [[p.rstrip("012") for p in pron if p[-1].isdigit()] for pron in cmu_lookup(word)]
        exact += first
        for position in range(len(first)):
            allowed.append({v[position] for v in variants if len(v) == len(first)} | {first[position]})
    return exact, allowed


def percentiles(values) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    if not array.size:
        return {"n": 0}
    p5, p25, p50, p75, p95 = np.percentile(array, PERCENTILES)
    return {
        "n": int(array.size),
        "p5": p5,
        "p25": p25,
        "median": p50,
        "p75": p75,
        "p95": p95,
        "iqr": p75 - p25,
    }


def note_kind(note: str) -> str:
    """A note with its numbers and quoted words replaced, so that notes of one kind count together."""
    return re.sub(r"\b\d+(\.\d+)?\b", "N", re.sub(r"'[^']*'", "'…'", note))[:140]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=0, help="clips, spread over actors (0: all 1080)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip subset")
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="extract_many cache ('' for none)")
    parser.add_argument("--out", default="benchmarks/results/prosody_alignment.json", help="JSON results")
    args = parser.parse_args()

    utterances = spread_subset(load_corpus("ravdess", "all", data_root=args.data_root), args.limit, args.seed)
    source = emollm_source_hash()
    # extract_many's cache key knows the pipeline only by PIPELINE_VERSION: one folder per state of the code.
    cache = Path(args.cache_dir) / f"prosody-{source[:12]}" if args.cache_dir else None
    batch = extract_many(utterances, cache_dir=cache, workers=args.workers, progress=True)
    emotions = list(get_label_set("ravdess8").labels)

    per_clip = []
    durations: list[tuple[str, str, float]] = []  # (phone, emotion, seconds) of pocketsphinx vowels
    voicing: list[tuple[str, str, float]] = []  # (phone, emotion, voiced fraction) of the same vowels
    substitutions: Counter = Counter()
    note_counts: Counter = Counter()
    for u, features in zip(utterances, batch.features):
        if features is None:
            continue
        alignment = features.alignment
        exact, allowed = expected_vowels(u.transcript)
        got = [v.phone for v in alignment.vowels]
        row = {
            "id": u.id,
            "emotion": u.label,
            "method": alignment.method,
            "vowels": got,
            "exact": got == exact,
            "variant": len(got) == len(allowed) and all(g in a for g, a in zip(got, allowed)),
            "notes": list(features.notes),
        }
        per_clip.append(row)
        for note in features.notes:
            note_counts[note_kind(note)] += 1
        if alignment.method == "pocketsphinx":
            durations += [(v.phone, u.label, v.duration) for v in alignment.vowels]
            voicing += [(v.phone, u.label, v.voiced_fraction) for v in features.vowels]
            if len(got) == len(exact):
                substitutions.update(f"{e} -> {g}" for e, g in zip(exact, got) if e != g)
            else:
                substitutions[f"{len(got)} vowels instead of {len(exact)}"] += 1

    n = len(per_clip)

    def share(rows, key) -> float:
        return sum(bool(r[key]) for r in rows) / len(rows) if rows else float("nan")

    overall = {
        "clips": len(utterances),
        "extracted": n,
        "errors": len(batch.errors),
        "cached": batch.cached,
        "pocketsphinx": sum(r["method"] == "pocketsphinx" for r in per_clip),
        "nuclei_fallback": sum(r["method"] == "nuclei" for r in per_clip),
        "exact_share": share(per_clip, "exact"),
        "variant_share": share(per_clip, "variant"),
        "clips_with_notes": sum(bool(r["notes"]) for r in per_clip),
    }
    by_emotion = {}
    for emotion in emotions:
        rows = [r for r in per_clip if r["emotion"] == emotion]
        vowel_s = [d for _, e, d in durations if e == emotion]
        voiced = [f for _, e, f in voicing if e == emotion]
        by_emotion[emotion] = {
            "clips": len(rows),
            "pocketsphinx_share": sum(r["method"] == "pocketsphinx" for r in rows) / len(rows) if rows else 0,
            "exact_share": share(rows, "exact"),
            "variant_share": share(rows, "variant"),
            "vowel_duration": percentiles(vowel_s),
            "unvoiced_vowel_share": float(np.mean(np.array(voiced) == 0)) if voiced else float("nan"),
        }
    all_s = [d for _, _, d in durations]
    by_phone = {
        phone: percentiles([d for p, _, d in durations if p == phone])
        for phone in sorted({p for p, _, _ in durations})
    }
    frame_floor = sum(d <= 0.0301 for d in all_s) / len(all_s) if all_s else float("nan")
    unvoiced = {
        phone: float(np.mean([f == 0 for p, _, f in voicing if p == phone]))
        for phone in sorted({p for p, _, _ in voicing})
    }
    unvoiced_all = float(np.mean([f == 0 for _, _, f in voicing])) if voicing else float("nan")

    pct = f"{100 * overall['pocketsphinx'] / n:.1f} %" if n else "n/a"
    print(
        f"{len(utterances)} RAVDESS clips: {n} extracted, {overall['errors']} errors, {batch.cached} cached"
    )
    print()
    print(
        "| clips | pocketsphinx | nuclei fallback | all vowels, exact | all vowels, any variant "
        "| with notes |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {n} | {overall['pocketsphinx']} ({pct}) | {overall['nuclei_fallback']} | "
        f"{100 * overall['exact_share']:.1f} % | {100 * overall['variant_share']:.1f} % | "
        f"{overall['clips_with_notes']} |"
    )
    print()
    print(
        "| emotion | clips | pocketsphinx | all vowels, exact | any variant | vowel duration median s "
        "| vowels with no voiced frame |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for emotion, r in by_emotion.items():
        median = r["vowel_duration"].get("median", float("nan"))
        print(
            f"| {emotion} | {r['clips']} | {100 * r['pocketsphinx_share']:.1f} % | "
            f"{100 * r['exact_share']:.1f} % | {100 * r['variant_share']:.1f} % | {median:.3f} | "
            f"{100 * r['unvoiced_vowel_share']:.1f} % |"
        )
    print()
    print("Vowel durations (s), pocketsphinx alignments (10 ms frames, 30 ms minimum per phone):")
    print()
    print("| vowel | n | p5 | p25 | median | p75 | p95 | IQR | no voiced frame |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in [("all", percentiles(all_s)), *by_phone.items()]:
        if r["n"]:
            cells = " | ".join(f"{r[k]:.3f}" for k in ("p5", "p25", "median", "p75", "p95", "iqr"))
            share_unvoiced = unvoiced_all if name == "all" else unvoiced.get(name, float("nan"))
            print(f"| {name} | {r['n']} | {cells} | {100 * share_unvoiced:.1f} % |")
    print()
    print(f"vowels at the 30 ms floor: {100 * frame_floor:.1f} %")
    print()
    print("| difference from the expected vowels (pocketsphinx clips) | clips/vowels |")
    print("|---|---:|")
    for key, count in substitutions.most_common(12):
        print(f"| {key} | {count} |")
    print()
    print("| note (numbers as N) | clips |")
    print("|---|---:|")
    for key, count in note_counts.most_common(12):
        print(f"| {key} | {count} |")
    if batch.errors:
        print()
        for index, message in sorted(batch.errors.items())[:10]:
            print(f"error: {utterances[index].id}: {message}")

    report = {
        "expected": {s: expected_vowels(s)[0] for s in sorted({u.transcript for u in utterances})},
        "overall": overall,
        "by_emotion": by_emotion,
        "vowel_duration": {"all": percentiles(all_s), "by_phone": by_phone, "at_30ms_floor": frame_floor},
        "unvoiced_vowel_share": {"all": unvoiced_all, "by_phone": unvoiced},
        "substitutions": dict(substitutions.most_common()),
        "notes": dict(note_counts.most_common()),
        "errors": {utterances[i].id: m for i, m in sorted(batch.errors.items())},
        "clips": per_clip,
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
