"""Are speaker-normalised frames worth it? A linear probe on pooled ``prosody_frames``, RAVDESS.

python benchmarks/frame_probe.py [--data-root ../shared/data] [--out benchmarks/results/frame_probe.json]

Train on actors 01-14, test on actors 15-18 (never seen), 8 classes. Each clip's ``prosody_frames``
(the pseudo-token route's encoder, cached like the recipes cache it) are pooled into their per-column mean
and standard deviation (44 numbers), then ``StandardScaler -> LogisticRegression(C=1, max_iter=3000)``, fit on
the training actors only. Two rows differ only in what the projector would read:

* **none**: the encoder's frames as they are (fixed scaling constants), ``AdapterSpec(normalize="none")``;
* **speaker**: frames z-scored with their speaker's statistics, fitted without labels on that speaker's clips
  (training actors on theirs, test actors on theirs): what ``AdapterSpec(normalize="speaker")`` feeds the
  projector in the recipes and the harness (:func:`emollm.inputs.encode_utterances`, which fits the
  statistics on the utterances it is given: a recipe's training split, an evaluation's split).

A probe, not the LLM: it says whether the normalisation makes emotion more linearly readable from the frames
the projector sees, in seconds instead of an SFT run.
"""

from __future__ import annotations

import argparse

from _common import write_result


def pooled(frames) -> list[list[float]]:
    import torch

    return [torch.cat([f.mean(0), f.std(0)]).tolist() for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--out", default="benchmarks/results/frame_probe.json", help="JSON results")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emollm.data import load_corpus
    from emollm.evaluation.metrics import compute_metrics
    from emollm.modeling.base import cache_dir
    from emollm.modeling.encoders import build_encoder, encode_cached
    from emollm.modeling.frame_norm import FrameNormalizer

    train = [u for u in load_corpus("ravdess", "train", data_root=args.data_root) if u.label is not None]
    test = [u for u in load_corpus("ravdess", "dev", data_root=args.data_root) if u.label is not None]
    encoder = build_encoder("prosody_frames")
    raw = {
        split: encode_cached(encoder, [u.audio_path for u in utts], cache_dir() / "features", progress=True)
        for split, utts in (("train", train), ("test", test))
    }
    rows = {}
    for normalize in ("none", "speaker"):
        frames = dict(raw)
        if normalize == "speaker":  # each split's own speakers, fitted without labels
            for split, utts in (("train", train), ("test", test)):
                speakers = [u.speaker for u in utts]
                stats = FrameNormalizer.fit(raw[split], speakers)
                frames[split] = [stats(f, s) for f, s in zip(raw[split], speakers)]
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
        probe.fit(pooled(frames["train"]), [u.label for u in train])
        predicted = [str(p) for p in probe.predict(pooled(frames["test"]))]
        metrics = compute_metrics([u.label for u in test], predicted, "ravdess8")
        rows[normalize] = {k: getattr(metrics, k) for k in ("n", "wa", "ua", "macro_f1")}

    write_result(args.out, {"train": len(train), "test": len(test), "rows": rows})
    print(f"RAVDESS actors 01-14 ({len(train)} clips) -> 15-18 ({len(test)} clips); 8 classes")
    print("| prosody_frames, mean+std pooled, LR | WA % | UA % | macro F1 % |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        wa, ua, f1 = (100 * row[k] for k in ("wa", "ua", "macro_f1"))
        print(f"| normalize={name} | {wa:.1f} | {ua:.1f} | {f1:.1f} |")


if __name__ == "__main__":
    main()
