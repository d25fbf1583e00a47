"""Bootstrap intervals and paired comparisons: the vectorised scores are compute_metrics', the intervals
behave, and two harness folders compare."""

import json
import random

import numpy as np
import pytest

from emollm.cli import main
from emollm.errors import ConfigError, DataError
from emollm.evaluation.bootstrap import bootstrap_ci, compare_runs, paired_bootstrap, resampled_scores
from emollm.evaluation.metrics import _encode, compute_metrics
from emollm.labels import get_label_set

LABELS = ["neutral", "happy", "sad", "angry", "fearful"]


def random_predictions(n, seed, right=0.5):
    """Gold labels that never use "fearful" (an absent class) and predictions with parse failures."""
    rng = random.Random(seed)
    gold = [rng.choice(LABELS[:4]) for _ in range(n)]
    pred = [g if rng.random() < right else rng.choice([*LABELS, None]) for g in gold]
    return gold, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampled_scores_equal_compute_metrics(seed):
    gold, pred = random_predictions(60, seed)
    label_set = get_label_set(LABELS)
    true_idx = _encode(gold, label_set, name="y_true", allow_none=False)
    pred_idx = _encode(pred, label_set, name="y_pred", allow_none=True)
    rng = np.random.default_rng(seed)
    indices = np.stack([np.arange(60), rng.integers(0, 60, 60), rng.integers(0, 60, 60)])
    scores = resampled_scores(true_idx, pred_idx, len(LABELS), indices)
    for row, idx in enumerate(indices):
        expected = compute_metrics([gold[i] for i in idx], [pred[i] for i in idx], LABELS)
        for name in ("wa", "ua", "weighted_f1", "macro_f1"):
            assert scores[name][row] == pytest.approx(getattr(expected, name), abs=1e-12), name


def test_interval_holds_the_estimate_and_narrows_with_more_data():
    small = bootstrap_ci(*random_predictions(60, 0), LABELS)
    gold, pred = random_predictions(2000, 0)
    large = bootstrap_ci(gold, pred, LABELS)
    wa = compute_metrics(gold, pred, LABELS).wa
    assert large["wa"][0] < wa < large["wa"][1]
    for name in small:
        assert small[name][0] <= small[name][1]
        assert large[name][1] - large[name][0] < small[name][1] - small[name][0]
    assert bootstrap_ci(gold, pred, LABELS, seed=3) == bootstrap_ci(gold, pred, LABELS, seed=3)


def test_paired_comparison_of_equal_and_of_better_predictions():
    gold, pred = random_predictions(300, 1)
    same = paired_bootstrap(gold, pred, list(pred), LABELS)
    assert all(r.diff == 0 and r.low == 0 and r.high == 0 and r.p == 1 for r in same.values())
    better = [g if i % 10 else p for i, (g, p) in enumerate(zip(gold, pred))]  # 90% set right
    result = paired_bootstrap(gold, pred, better, LABELS)["wa"]
    assert result.diff > 0.3 and 0 < result.low <= result.diff <= result.high and result.p < 0.01
    flipped = paired_bootstrap(gold, better, pred, LABELS)["wa"]
    assert flipped.diff == pytest.approx(-result.diff) and flipped.high < 0


def test_bad_arguments_are_refused():
    gold, pred = random_predictions(10, 0)
    with pytest.raises(ConfigError, match="n_resamples must be a positive integer"):
        bootstrap_ci(gold, pred, LABELS, n_resamples=0)
    with pytest.raises(ConfigError, match="level must be between 0 and 1"):
        bootstrap_ci(gold, pred, LABELS, level=95)
    with pytest.raises(DataError, match="match the gold labels in length"):
        paired_bootstrap(gold, pred, pred[:5], LABELS)


def write_run(folder, gold, pred, ids=None, labels=LABELS):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"settings": {"labels": labels}}))
    ids = ids or [f"u{i}" for i in range(len(gold))]
    rows = [{"id": i, "gold": g, "label": p} for i, g, p in zip(ids, gold, pred)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_runs_pairs_utterances_by_id(tmp_path, capsys):
    gold, pred = random_predictions(100, 2)
    better = [g if i % 4 else p for i, (g, p) in enumerate(zip(gold, pred))]
    a = write_run(tmp_path / "a", gold, pred)
    ids = [f"u{i}" for i in range(100)]
    order = list(range(100))[::-1][:90]  # B: another order, 10 utterances missing
    b = write_run(
        tmp_path / "b", [gold[i] for i in order], [better[i] for i in order], [ids[i] for i in order]
    )
    comparison = compare_runs(a, b)
    assert comparison["n"] == 90 and comparison["only_a"] == 10 and comparison["only_b"] == 0
    expected = paired_bootstrap(gold[10:], pred[10:], better[10:], LABELS)
    assert comparison["metrics"]["wa"]["diff"] == pytest.approx(expected["wa"].diff)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "90 utterances in both (10 only in A, 0 only in B)" in out and "| wa |" in out

    wrong = write_run(tmp_path / "wrong", ["sad"] * 100, pred)
    with pytest.raises(DataError, match="different gold labels"):
        compare_runs(a, wrong)
    other = write_run(tmp_path / "other", gold, pred, labels=LABELS[:4] + ["surprised"])
    with pytest.raises(ConfigError, match="different label sets"):
        compare_runs(a, other)
    assert main(["compare", str(a), str(tmp_path / "nope")]) == 2
    assert "not an evaluation folder" in capsys.readouterr().err


def test_comparing_a_run_still_writing_leaves_its_file_alone(tmp_path):
    gold, pred = random_predictions(20, 3)
    a = write_run(tmp_path / "a", gold, pred)
    b = write_run(tmp_path / "b", gold, pred)
    predictions = b / "predictions.jsonl"
    with open(predictions, "a") as handle:
        handle.write('{"id": "u20", "gold": "sad", "lab')  # the writer is mid-line
    size = predictions.stat().st_size
    assert compare_runs(a, b)["n"] == 20
    assert predictions.stat().st_size == size  # nothing cut: the writer's line stays whole


def test_malformed_folders_are_one_line_errors(tmp_path, capsys):
    gold, pred = random_predictions(10, 4)
    a = write_run(tmp_path / "a", gold, pred)
    broken = write_run(tmp_path / "broken", gold, pred)
    (broken / "config.json").write_text('{"emollm": "0.1.0"}')
    with pytest.raises(DataError, match="needs settings.labels"):
        compare_runs(a, broken)
    rowless = write_run(tmp_path / "rowless", gold, pred)
    (rowless / "predictions.jsonl").write_text('{"id": "u0", "gold": "sad"}\n')
    with pytest.raises(DataError, match="rows without 'gold' and 'label'"):
        compare_runs(a, rowless)
    assert main(["compare", str(a), str(broken)]) == 2
    assert "Traceback" not in capsys.readouterr().err
