"""Does prosody carry emotion? A linear probe on RAVDESS: our prosodic features vs openSMILE eGeMAPSv02.

python benchmarks/prosody_probe.py [--data-root ../shared/data] [--limit 0] [--workers 2]
    [--cache-dir ~/.cache/emollm/bench] [--c-grid 0.001,0.01,0.1,1,10]
    [--out benchmarks/results/prosody_probe.json]

Train on actors 01-14, test on actors 15-18 (speakers never seen in training), 8 classes. The probe is
``SimpleImputer(median) -> StandardScaler -> LogisticRegression(max_iter=2000, class_weight="balanced")``,
everything fit on the training actors only (the imputer's medians too). Feature sets:

* **ours, raw**: ``ProsodyFeatures.flat()`` (52 numbers: utterance measures, vowel aggregates).
* **ours, raw + z (train normaliser)**: plus ``NormalizedProsody.flat()`` from a ``ProsodyNormalizer`` fit on
  the training actors only. Training actors get speaker-relative z-scores; test actors are unknown to it,
  so theirs fall back to the corpus reference (utterance z vs the training corpus, vowel z vs the utterance).
* **ours, raw + z (own-speaker statistics)**: the same normaliser, plus, for each speaker it does not know,
  statistics fit on that speaker's own utterances *without labels* (unsupervised speaker normalisation, as
  usual in the speech-emotion literature). Corpus statistics still come from the training actors only.
* **eGeMAPSv02**: the 88 openSMILE functionals; **eGeMAPSv02, speaker z**: each feature z-scored over the
  speaker's own utterances (unsupervised, the openSMILE counterpart of the previous variant).
* **both**: ours (raw + z) next to eGeMAPSv02, in the matching normalisation.

Regularisation: ``C=1`` (scikit-learn's default), and ``C`` chosen from ``--c-grid`` by grouped 7-fold
cross-validation over the training actors (GroupKFold by actor, 2 actors per fold, mean UA; normalisers
are refit inside each fold). The test actors are never used to choose anything. WA is accuracy, UA the mean
per-class recall (:func:`emollm.evaluation.metrics.compute_metrics`); chance UA is 1/8.
Features come from :func:`~emollm.prosody.pipeline.extract_many` (cached under
``--cache-dir/prosody-<hash of the emollm prosody code>``, shared with ``prosody_alignment.py``) and an
openSMILE cache beside it, so re-runs only fit the probes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import emollm_source_hash, spread_subset, write_result

from emollm.data import load_corpus
from emollm.evaluation.metrics import compute_metrics
from emollm.io import write_text_atomic
from emollm.labels import get_label_set
from emollm.prosody.normalize import ProsodyNormalizer
from emollm.prosody.pipeline import extract_many

DEFAULT_CACHE = Path("~/.cache/emollm/bench").expanduser()
LABELS = "ravdess8"
SEED = 0
CV_FOLDS = 7


# -- openSMILE, cached like extract_many ---------------------------------------------------------------------


def opensmile_features(paths: list[str], cache_dir: str | None, workers: int) -> tuple[np.ndarray, list[str]]:
    """eGeMAPSv02 functionals of each file, shape ``(len(paths), 88)``, and the feature names."""
    import opensmile

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
        num_workers=workers,
        multiprocessing=workers > 1,
    )
    folder = (
        Path(cache_dir) / f"opensmile-{opensmile.__version__}-eGeMAPSv02-functionals" if cache_dir else None
    )
    keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    rows: dict[int, list[float]] = {}
    names: list[str] = []
    for i, key in enumerate(keys):
        entry = folder / key[:2] / f"{key}.json" if folder else None
        if entry is not None and entry.is_file():
            data = json.loads(entry.read_text())
            rows[i], names = data["values"], data["names"]
    todo = [i for i in range(len(paths)) if i not in rows]
    if todo:
        start = time.perf_counter()
        frame = smile.process_files([paths[i] for i in todo])
        names = list(frame.columns)
        by_file = {str(f): values for (f, _, _), values in zip(frame.index, frame.to_numpy().tolist())}
        for i in todo:
            rows[i] = by_file[str(paths[i])]
            if folder is not None:
                entry = folder / keys[i][:2] / f"{keys[i]}.json"
                write_text_atomic(entry, json.dumps({"names": names, "values": rows[i]}))
        print(f"openSMILE: {len(todo)} files in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return np.array([rows[i] for i in range(len(paths))], dtype=float), names


# -- our features --------------------------------------------------------------------------------------------


def flat_matrix(dicts: list[dict | None]) -> tuple[np.ndarray, list[str]]:
    """Rows of named numbers -> a matrix (NaN rows for failures), columns in the first row's key order."""
    names = list(next(d for d in dicts if d is not None))
    return np.array([[d.get(k, np.nan) if d else np.nan for k in names] for d in dicts], dtype=float), names


def normalized_rows(features: list, speakers: list[str], train: np.ndarray, own: bool):
    """``NormalizedProsody.flat()`` of every item and the reference each got.

    The normaliser is fit on the ``train`` items only. ``own``: speakers it does not know get statistics
    fit on all of their own items (no labels involved); otherwise they fall back to the corpus reference.
    """
    norm = ProsodyNormalizer().fit([features[i] for i in train if features[i] is not None])
    if own:
        norm = ProsodyNormalizer.from_dict(norm.to_dict())
        for speaker in sorted(set(speakers) - set(norm.speakers)):
            mine = [f for f, s in zip(features, speakers) if s == speaker and f is not None]
            if mine:
                fitted = ProsodyNormalizer().fit(mine)
                norm.speaker_stats.update(fitted.speaker_stats)
    rows, references = [], []
    for f, speaker in zip(features, speakers):
        if f is None:
            rows.append(None)
            references.append("failed")
            continue
        out = norm.transform(f, speaker)
        rows.append(out.flat())
        references.append(out.reference)
    return rows, references


def speaker_z(matrix: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Each column z-scored over each speaker's own rows (NaN-aware; a constant column becomes 0)."""
    out = np.full_like(matrix, np.nan)
    ids = np.array(speakers)
    for speaker in sorted(set(speakers)):
        rows = ids == speaker
        block = matrix[rows]
        mean, std = np.nanmean(block, axis=0), np.nanstd(block, axis=0)
        out[rows] = (block - mean) / np.where(std > 1e-12, std, np.inf)
    return out


# -- the probe -----------------------------------------------------------------------------------------------


def probe(c: float):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=SEED),
    )


def fit_score(x_train, y_train, x_test, y_test, c: float):
    model = probe(c).fit(x_train, y_train)
    return compute_metrics(list(y_test), list(model.predict(x_test)), LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=0, help="clips, spread over actors (0: all 1080)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the clip subset")
    parser.add_argument("--workers", type=int, default=2, help="extraction processes")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="feature cache ('' for none)")
    parser.add_argument("--c-grid", default="0.001,0.01,0.1,1,10", help="C values tried by grouped CV")
    parser.add_argument("--out", default="benchmarks/results/prosody_probe.json", help="JSON results")
    args = parser.parse_args()
    np.random.seed(SEED)
    grid = [float(c) for c in args.c_grid.split(",")]

    train_ids = {u.id for u in load_corpus("ravdess", "train", data_root=args.data_root)}
    dev_ids = {u.id for u in load_corpus("ravdess", "dev", data_root=args.data_root)}
    chosen = spread_subset(load_corpus("ravdess", "all", data_root=args.data_root), args.limit, args.seed)
    items = [u for u in chosen if u.id in train_ids] + [u for u in chosen if u.id in dev_ids]
    is_train = np.array([u.id in train_ids for u in items])
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    speakers = [u.speaker for u in items]
    y = np.array([u.label for u in items])

    source = emollm_source_hash()
    # extract_many's cache key knows the pipeline only by PIPELINE_VERSION: one folder per state of the code.
    cache = Path(args.cache_dir) / f"prosody-{source[:12]}" if args.cache_dir else None
    batch = extract_many(items, cache_dir=cache, workers=args.workers, progress=True)
    features = batch.features
    smile, smile_names = opensmile_features(
        [u.audio_path for u in items], args.cache_dir or None, args.workers
    )
    raw, raw_names = flat_matrix([f.flat() if f is not None else None for f in features])
    smile_z = speaker_z(smile, speakers)

    def ours(fit_on: np.ndarray, variant: str) -> np.ndarray:
        if variant == "raw":
            return raw
        rows, _ = normalized_rows(features, speakers, fit_on, own=variant == "own")
        return np.hstack([raw, flat_matrix(rows)[0]])

    # name -> function(train indices) -> full feature matrix (normalisers fit on those indices only)
    feature_sets = {
        "ours: raw": lambda fit_on: ours(fit_on, "raw"),
        "ours: raw + z (train normaliser; test -> corpus)": lambda fit_on: ours(fit_on, "train"),
        "ours: raw + z (own-speaker stats, unsupervised)": lambda fit_on: ours(fit_on, "own"),
        "eGeMAPSv02": lambda fit_on: smile,
        "eGeMAPSv02, speaker z (unsupervised)": lambda fit_on: smile_z,
        "both (train normaliser) + eGeMAPSv02": lambda fit_on: np.hstack([ours(fit_on, "train"), smile]),
        "both (own-speaker) + eGeMAPSv02": lambda fit_on: np.hstack([ours(fit_on, "own"), smile]),
        "both (own-speaker) + eGeMAPSv02 speaker z": lambda fit_on: np.hstack([ours(fit_on, "own"), smile_z]),
    }

    from sklearn.model_selection import GroupKFold

    train_groups = np.array(speakers)[train]
    folds = list(GroupKFold(n_splits=min(CV_FOLDS, len(set(train_groups)))).split(train, groups=train_groups))
    results = {}
    for name, build in feature_sets.items():
        start = time.perf_counter()
        matrix = build(train)
        default = fit_score(matrix[train], y[train], matrix[test], y[test], 1.0)
        cv_ua = {c: [] for c in grid}
        for fold_train, fold_val in folds:
            fold_matrix = build(train[fold_train])
            for c in grid:
                metrics = fit_score(
                    fold_matrix[train[fold_train]], y[train[fold_train]],
                    fold_matrix[train[fold_val]], y[train[fold_val]], c,
                )  # fmt: skip
                cv_ua[c].append(metrics.ua)
        best = max(grid, key=lambda c: (np.mean(cv_ua[c]), -c))  # ties: the stronger regularisation
        tuned = default if best == 1.0 else fit_score(matrix[train], y[train], matrix[test], y[test], best)
        results[name] = {
            "n_features": int(matrix.shape[1]),
            "c1": {"wa": default.wa, "ua": default.ua},
            "cv_ua_by_c": {str(c): float(np.mean(v)) for c, v in cv_ua.items()},
            "chosen_c": best,
            "tuned": {"wa": tuned.wa, "ua": tuned.ua, "per_class": tuned.per_class},
            "seconds": time.perf_counter() - start,
        }
        print(f"{name}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    _, references = normalized_rows(features, speakers, train, own=False)
    test_refs = sorted({references[i] for i in test})
    majority = max(set(y[train].tolist()), key=lambda c: ((y[train] == c).sum(), c))
    majority_wa = float(np.mean(y[test] == majority))
    n_labels = len(get_label_set(LABELS).labels)

    print(
        f"train: actors 01-14, {len(train)} clips; test: actors 15-18, {len(test)} clips; "
        f"{len(batch.errors)} extraction failures; test references (train normaliser): {test_refs}"
    )
    print()
    print("| features | n | WA (C=1) | UA (C=1) | C (grouped CV on train) | CV UA | WA | UA |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cv = r["cv_ua_by_c"][str(r["chosen_c"])]
        print(
            f"| {name} | {r['n_features']} | {100 * r['c1']['wa']:.1f} | {100 * r['c1']['ua']:.1f} | "
            f"{r['chosen_c']:g} | {100 * cv:.1f} | {100 * r['tuned']['wa']:.1f} | "
            f"{100 * r['tuned']['ua']:.1f} |"
        )
    print(
        f"| chance (uniform guess) | - | {100 / n_labels:.1f} | {100 / n_labels:.1f} | - | - | "
        f"{100 / n_labels:.1f} | {100 / n_labels:.1f} |"
    )
    print(f"| majority class of train ({majority}) | - | {100 * majority_wa:.1f} | 12.5 | - | - | - | - |")

    report = {
        "train_clips": len(train),
        "test_clips": len(test),
        "extraction_errors": {items[i].id: m for i, m in sorted(batch.errors.items())},
        "c_grid": grid,
        "cv": f"GroupKFold(n_splits={len(folds)}) by actor over the training actors, mean UA",
        "results": results,
        "chance_ua": 1 / n_labels,
        "majority_class": majority,
        "majority_wa": majority_wa,
        "feature_names": {"ours_raw": raw_names, "opensmile": smile_names},
        "test_references_train_normaliser": {r: sum(references[i] == r for i in test) for r in test_refs},
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
