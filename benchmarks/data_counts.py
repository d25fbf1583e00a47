"""Load the shared corpora with emollm's readers and print utterance, speaker and label counts.

python benchmarks/data_counts.py [--data-root ../shared/data] [--json counts.json]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _common import write_result

from emollm.data import load_corpus
from emollm.labels import get_label_set

CORPORA = [
    ("ravdess", "all", "ravdess8"),
    ("ravdess", "train", "ravdess8"),
    ("ravdess", "dev", "ravdess8"),
    ("meld", "train", "meld7"),
    ("meld", "dev", "meld7"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/ and meld/")
    parser.add_argument("--json", help="also write the counts to this JSON file (the results envelope)")
    args = parser.parse_args()

    rows = []
    for corpus, split, labels in CORPORA:
        start = time.perf_counter()
        utterances = load_corpus(corpus, split, data_root=args.data_root)
        counts = Counter(u.label for u in utterances)
        rows.append(
            {
                "corpus": corpus,
                "split": split,
                "n": len(utterances),
                "speakers": len({u.speaker for u in utterances}),
                "labels": {label: counts.get(label, 0) for label in get_label_set(labels).labels},
                "seconds": round(time.perf_counter() - start, 2),
            }
        )

    print("| corpus | split | utterances | speakers | label counts | load s |")
    print("|---|---|---:|---:|---|---:|")
    for row in rows:
        labels = ", ".join(f"{k} {v}" for k, v in row["labels"].items())
        cells = [row["corpus"], row["split"], row["n"], row["speakers"], labels, row["seconds"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json:
        write_result(args.json, rows)


if __name__ == "__main__":
    main()
