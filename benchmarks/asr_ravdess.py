"""Speech recognition on RAVDESS: word error rate of pocketsphinx, and vowel timing of ASR-fed alignment.

python benchmarks/asr_ravdess.py [--data-root ../shared/data] [--limit 0] [--seed 0]
    [--cache-dir ~/.cache/emollm/bench] [--out benchmarks/results/asr_ravdess.json]

RAVDESS's 1080 speech clips say one of two known sentences ("Kids are talking by the door", "Dogs are sitting
by the door"), so every clip's transcript is known. Per clip:

1. **ASR**: :func:`emollm.asr.transcribe` with the default backend (pocketsphinx): word errors against the
   known sentence (:func:`emollm.asr.word_errors`: substitutions, deletions and insertions, case and
   punctuation ignored), and its seconds.
2. **Gold alignment**: :func:`emollm.prosody.align.align` with the known sentence, what ``predict`` does
   with a given transcript.
3. **ASR-text alignment**: the same :func:`~emollm.prosody.align.align` with the recognised text, what
   ``predict`` does without a transcript (the forced aligner's own word pass, then its phone pass; an
   implausible alignment falls back to syllable nuclei, whose vowels match nothing).
4. **ASR-seeded alignment**: no second word pass: pocketsphinx's phone pass (``set_alignment``) run on the
   recogniser's own word segmentation, right after the recognition pass.

Vowel timing agreement, for 3 and 4 against 2: the share of gold vowels (clips whose gold alignment is a
pocketsphinx one) matched by a vowel of the same phone whose start and end both lie within 30 ms (and 50 ms)
of the gold vowel's. Reported over all clips, and over the clips the recogniser got wrong (on clips it got
right, ASR-text alignment is the gold alignment by construction).

Each clip's results are cached in ``--cache-dir/asr-<hash of emollm's asr and prosody code>/clips.jsonl``;
an interrupted run resumes there. About 1.5 s per clip on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _common import emollm_source_hash, spread_subset, write_result

import emollm
from emollm.asr import _pocketsphinx_decoder, transcribe, word_errors
from emollm.audio import load_audio
from emollm.data import load_corpus
from emollm.prosody.align import FRAME, align, decode_utterance, decoder_input
from emollm.prosody.textgrid import is_vowel

DEFAULT_CACHE = Path("~/.cache/emollm/bench").expanduser()
TOLERANCES = (0.03, 0.05)


def vowels_of(alignment) -> list[list]:
    """``[phone, start, end]`` of each vowel of an alignment (none for syllable nuclei: no phone)."""
    if alignment.method != "pocketsphinx":
        return []
    return [[v.phone, v.start, v.end] for v in alignment.vowels]


def seeded_vowels(audio) -> list[list]:
    """Vowels of pocketsphinx's phone pass over the recogniser's last word segmentation (no word pass).

    Call right after :func:`~emollm.asr.transcribe` of the same audio: ``set_alignment`` aligns the phones
    of the decoder's current hypothesis. The language-model search is restored afterwards.
    """
    decoder, cmn = _pocketsphinx_decoder()
    pcm, offset = decoder_input(audio)
    try:
        decoder.set_alignment()
        decode_utterance(decoder, cmn, pcm)
        phones = [(p.name, p.start, p.duration) for p in decoder.get_alignment().phones()]
    except RuntimeError:  # no hypothesis to align (nothing recognised)
        phones = []
    finally:
        decoder.activate_search()  # back to the language model
    out = []
    for name, start, duration in phones:
        if is_vowel(name):
            begin = min(max(start * FRAME + offset, 0.0), audio.duration)
            end = min(max((start + duration) * FRAME + offset, begin), audio.duration)
            out.append([name, round(begin, 4), round(end, 4)])
    return out


def measure_clip(utterance) -> dict:
    audio = load_audio(utterance.audio_path)
    start = time.perf_counter()
    heard = transcribe(audio)
    asr_s = time.perf_counter() - start
    start = time.perf_counter()
    seeded = seeded_vowels(audio) if heard.words else []
    seeded_s = time.perf_counter() - start
    start = time.perf_counter()
    gold = align(audio, utterance.transcript)
    gold_s = time.perf_counter() - start
    start = time.perf_counter()
    again = align(audio, heard.text) if heard.words else None
    again_s = time.perf_counter() - start if again is not None else None
    errors, words = word_errors(utterance.transcript, heard.text)
    return {
        "id": utterance.id,
        "sentence": utterance.transcript,
        "emotion": utterance.label,
        "heard": heard.text,
        "confidence": heard.confidence,
        "errors": errors,
        "words": words,
        "gold_method": gold.method,
        "gold": vowels_of(gold),
        "asr_text_method": again.method if again is not None else "none",
        "asr_text": vowels_of(again) if again is not None else [],
        "seeded": seeded,
        "seconds": {
            "asr": asr_s,
            "seeded_phone_pass": seeded_s,
            "gold_align": gold_s,
            "asr_text_align": again_s,
        },
    }


def agreement(rows: list[dict], key: str, tolerance: float) -> tuple[int, int]:
    """Gold vowels matched by a same-phone vowel of ``key`` within ``tolerance`` at both ends; gold vowels."""
    hit = total = 0
    for row in rows:
        for phone, start, end in row["gold"]:
            total += 1
            hit += any(
                p == phone and abs(s - start) <= tolerance + 1e-9 and abs(e - end) <= tolerance + 1e-9
                for p, s, e in row[key]
            )
    return hit, total


def wer(rows: list[dict]) -> float:
    words = sum(r["words"] for r in rows)
    return sum(r["errors"] for r in rows) / words if words else float("nan")


def cache_file(cache_dir: str) -> Path | None:
    if not cache_dir:
        return None
    package = Path(emollm.__file__).parent
    digest = hashlib.sha256(emollm_source_hash("prosody").encode() + (package / "asr.py").read_bytes())
    return Path(cache_dir) / f"asr-{digest.hexdigest()[:12]}" / "clips.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=0, help="clips, spread over actors (0: all 1080)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip subset")
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE), help="per-clip results cache ('' for none)"
    )
    parser.add_argument("--out", default="benchmarks/results/asr_ravdess.json", help="JSON results")
    args = parser.parse_args()

    utterances = spread_subset(load_corpus("ravdess", "all", data_root=args.data_root), args.limit, args.seed)
    cache = cache_file(args.cache_dir)
    done: dict[str, dict] = {}
    if cache is not None and cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:  # a line cut short by a killed run: that clip is redone
                row = None
            if row is not None:
                done[row["id"]] = row
    rows = []
    cached = 0
    for index, utterance in enumerate(utterances, 1):
        if utterance.id in done:
            rows.append(done[utterance.id])
            cached += 1
            continue
        row = measure_clip(utterance)
        rows.append(row)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with cache.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if index % 20 == 0 or index == len(utterances):
            print(f"  {index}/{len(utterances)} clips", flush=True)

    wrong = [r for r in rows if r["errors"]]
    by_sentence = defaultdict(list)
    by_emotion = defaultdict(list)
    for r in rows:
        by_sentence[r["sentence"]].append(r)
        by_emotion[r["emotion"]].append(r)

    def timing(rows_, name):
        values = [r["seconds"][name] for r in rows_ if r["seconds"][name] is not None]
        return float(np.mean(values)) if values else float("nan")

    agree = {}
    for subset_name, subset in (("all", rows), ("asr_wrong", wrong)):
        agree[subset_name] = {}
        for key in ("asr_text", "seeded"):
            for tolerance in TOLERANCES:
                hit, total = agreement(subset, key, tolerance)
                agree[subset_name][f"{key}@{round(tolerance * 1000)}ms"] = (
                    hit / total if total else float("nan")
                )
        agree[subset_name]["gold_vowels"] = agreement(subset, "asr_text", TOLERANCES[0])[1]
    confidences = {
        "exact_clips": [r["confidence"] for r in rows if not r["errors"] and r["confidence"] is not None],
        "wrong_clips": [r["confidence"] for r in wrong if r["confidence"] is not None],
    }
    results = {
        "clips": len(rows),
        "cached": cached,
        "wer": wer(rows),
        "wer_by_sentence": {s: wer(rs) for s, rs in sorted(by_sentence.items())},
        "wer_by_emotion": {e: wer(rs) for e, rs in sorted(by_emotion.items())},
        "exact_clips": sum(not r["errors"] for r in rows) / len(rows) if rows else float("nan"),
        "clips_with_no_words": sum(not r["heard"] for r in rows),
        "mean_confidence": {k: float(np.mean(v)) if v else float("nan") for k, v in confidences.items()},
        "gold_pocketsphinx_clips": sum(r["gold_method"] == "pocketsphinx" for r in rows),
        "asr_text_pocketsphinx_clips": sum(r["asr_text_method"] == "pocketsphinx" for r in rows),
        "vowel_agreement": agree,
        "seconds_per_clip": {
            name: timing(rows, name) for name in ("asr", "seeded_phone_pass", "gold_align", "asr_text_align")
        },
        "most_common_errors": _common_hypotheses(rows),
    }

    print(f"\n{len(rows)} RAVDESS clips ({cached} from the cache)\n")
    print("| word error rate | all | " + " | ".join(by_sentence) + " | clips exactly right | no words |")
    print("|---|---:|" + "---:|" * len(by_sentence) + "---:|---:|")
    print(
        f"| pocketsphinx | {100 * results['wer']:.1f} % | "
        + " | ".join(f"{100 * results['wer_by_sentence'][s]:.1f} %" for s in by_sentence)
        + f" | {100 * results['exact_clips']:.1f} % | {results['clips_with_no_words']} |"
    )
    print("\n| emotion | clips | word error rate |\n|---|---:|---:|")
    for emotion, rs in sorted(by_emotion.items()):
        print(f"| {emotion} | {len(rs)} | {100 * wer(rs):.1f} % |")
    print(
        "\nVowel timing vs alignment with the known sentence (share of its vowels matched, same phone, both"
    )
    print("ends within the tolerance):\n")
    print(
        "| clips | gold vowels | ASR text, 30 ms | ASR text, 50 ms | ASR-seeded, 30 ms | ASR-seeded, 50 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for subset_name, label in (("all", f"all ({len(rows)})"), ("asr_wrong", f"ASR wrong ({len(wrong)})")):
        a = agree[subset_name]
        cells = " | ".join(f"{100 * a[f'{k}@{t}ms']:.1f} %" for k in ("asr_text", "seeded") for t in (30, 50))
        print(f"| {label} | {a['gold_vowels']} | {cells} |")
    s = results["seconds_per_clip"]
    print(
        f"\nseconds per clip: ASR {s['asr']:.2f}, seeded phone pass {s['seeded_phone_pass']:.2f}, alignment "
        f"with the known sentence {s['gold_align']:.2f}, with the ASR text {s['asr_text_align']:.2f}"
    )
    m = results["mean_confidence"]
    print(f"mean word confidence: clips exactly right {m['exact_clips']:.2f}, others {m['wrong_clips']:.2f}")
    results["per_clip"] = rows
    write_result(args.out, results)


def _common_hypotheses(rows: list[dict], n: int = 10) -> list[list]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        if r["errors"]:
            counts[r["sentence"], r["heard"]] += 1
    return [[s, h, c] for (s, h), c in sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


if __name__ == "__main__":
    main()
