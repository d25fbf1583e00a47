"""Calibration and distribution metrics against hand-computed values; temperature scaling; the diagram."""

import json
import math

import numpy as np
import pytest

from emollm.data import Utterance
from emollm.errors import ConfigError, DataError
from emollm.evaluation.calibration import (
    apply_temperature,
    brier_score,
    calibration_comparison_markdown,
    compare_calibration,
    distribution_scores,
    expected_calibration_error,
    fit_temperature,
    gold_distribution,
    load_temperature,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_bins,
    save_temperature,
)
from emollm.evaluation.metrics import baselines, compute_metrics
from emollm.labels import get_label_set

pytestmark = pytest.mark.filterwarnings("error")

NEG, NEU, POS = "negative", "neutral", "positive"  # sentiment3, in set order

# 5 utterances, 3 classes; top-1 confidence, whether it is right, and its bin of 15 ((b/15, (b+1)/15]):
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # gold neg: 0.90 right -> bin 13 (0.867, 0.933]
        [0.60, 0.30, 0.10],  # gold neu: 0.60 wrong -> bin 8 (0.533, 0.600]: 0.6 is its upper edge
        [0.30, 0.70, 0.00],  # gold neu: 0.70 right -> bin 10 (0.667, 0.733]
        [0.10, 0.20, 0.70],  # gold pos: 0.70 right -> bin 10
        [0.58, 0.02, 0.40],  # gold pos: 0.58 wrong -> bin 8
    ]
)
GOLD = [NEG, NEU, NEU, POS, POS]
GOLD_IDX = np.array([0, 1, 1, 2, 2])
PRED = [NEG, NEG, NEU, POS, NEG]  # the top-1 labels

# ECE = sum_b |B|/n |acc - conf|: bin 13 1/5 * |1 - 0.9|; bin 8 2/5 * |0 - 0.59|; bin 10 2/5 * |1 - 0.7|
ECE = 0.2 * 0.1 + 0.4 * 0.59 + 0.4 * 0.3  # = 0.376
# Brier = mean sum_c (p_c - y_c)^2 per row: 0.015, 0.86, 0.18, 0.14, 0.6968
BRIER = (
    0.01 + 0.0025 + 0.0025 + 0.36 + 0.49 + 0.01 + 0.09 + 0.09 + 0.01 + 0.04 + 0.09 + 0.3364 + 0.0004 + 0.36
) / 5
NLL = -(math.log(0.9) + math.log(0.3) + math.log(0.7) + math.log(0.7) + math.log(0.4)) / 5


def test_ece_brier_and_nll_by_hand():
    assert expected_calibration_error(PROBS, GOLD_IDX) == pytest.approx(ECE)
    assert brier_score(PROBS, GOLD_IDX) == pytest.approx(BRIER)
    assert negative_log_likelihood(PROBS, GOLD_IDX) == pytest.approx(NLL)
    m = compute_metrics(GOLD, PRED, "sentiment3", probabilities=PROBS)
    assert (m.ece, m.brier, m.nll) == pytest.approx((ECE, BRIER, NLL))
    assert {"ece", "brier", "nll"} <= set(json.loads(json.dumps(m.to_dict())))
    bins = reliability_bins(PROBS, GOLD_IDX)
    assert (
        len(bins) == 15
        and bins[8]["lower"] == pytest.approx(8 / 15)
        and bins[8]["upper"] == pytest.approx(0.6)
    )
    filled = [(i, b["count"], b["accuracy"], b["confidence"]) for i, b in enumerate(bins) if b["count"]]
    assert np.array(filled) == pytest.approx(
        np.array([(8, 2, 0.0, 0.59), (10, 2, 1.0, 0.7), (13, 1, 1.0, 0.9)])
    )
    assert all(b["accuracy"] is None and b["confidence"] is None for b in bins if not b["count"])
    edge = reliability_bins([[0.8, 0.2]], [0])  # 0.8 * 15 = 12.000000000000002 in floating point
    assert [b["upper"] for b in edge if b["count"]] == [pytest.approx(0.8)]  # bins are (lower, upper]


def test_a_parse_failure_has_no_confidence_but_still_counts_for_brier_and_nll():
    pred = list(PRED)
    pred[1] = None  # the wrong 0.60 answer named no label
    m = compute_metrics(GOLD, pred, "sentiment3", probabilities=PROBS)
    # ECE over the 4 others: bin 13 |1 - 0.9|, bin 8 |0 - 0.58|, bin 10 2 * |1 - 0.7|, over n = 4
    assert m.ece == pytest.approx((0.1 + 0.58 + 0.6) / 4)
    assert (m.brier, m.nll) == pytest.approx((BRIER, NLL))
    assert compute_metrics([NEG], [None], "sentiment3", probabilities=[[1.0, 0, 0]]).ece is None


def test_nll_clips_a_zero_probability_at_1e_minus_12():
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))


def test_chance_baseline_is_perfectly_calibrated():
    chance = baselines([NEG, NEU, NEU, POS], "sentiment3")["chance"]
    assert chance.ece == pytest.approx(0.0, abs=1e-12)  # 1/3 sure, right 1/3 of the time
    assert chance.brier == pytest.approx(1 - 1 / 3)  # (2/3)^2 + 2 (1/3)^2
    assert chance.nll == pytest.approx(math.log(3))
    assert baselines([NEG], "sentiment3")["majority"].ece is None  # no probabilities


def test_distribution_metrics_by_hand():
    p = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]]
    q = [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    scores = distribution_scores(p, q)
    # Bhattacharyya: 1, 0, sqrt(0.5 * 1)
    assert scores["bhattacharyya"] == pytest.approx((1 + 0 + math.sqrt(0.5)) / 3)
    # JS (base 2), m = (p + q) / 2: 0; 1; row 3 m = (.125, .125, .75):
    # KL(p||m) = 2 * .25 log2 2 + .5 log2(2/3), KL(q||m) = log2(4/3)
    js3 = 0.5 * (0.5 + 0.5 * math.log2(2 / 3)) + 0.5 * math.log2(4 / 3)
    assert scores["js_divergence"] == pytest.approx((0 + 1 + js3) / 3)
    # R^2: SS_res = 0 + 2 + (.0625 + .0625 + .25) = 2.375; gold cells' mean 1/3, SS_tot = 2.5 - 9/9 = 1.5
    assert scores["r2"] == pytest.approx(1 - 2.375 / 1.5)
    assert scores["n"] == 3
    assert distribution_scores(q, q) == pytest.approx(
        {"n": 3, "bhattacharyya": 1, "js_divergence": 0, "r2": 1}
    )
    assert distribution_scores([[0.2, 0.8]], [[0.5, 0.5]])["r2"] is None  # every gold cell the same
    with pytest.raises(DataError, match="shape"):
        distribution_scores(p, q[:2])


def test_gold_distribution_from_votes_or_a_manifest_column():
    iemocap4 = get_label_set("iemocap4")
    votes = Utterance(id="a", label="happy", label_distribution={"happy": 0.75, "neutral": 0.25})
    assert gold_distribution(votes, iemocap4) == {"neutral": 0.25, "happy": 0.75, "sad": 0.0, "angry": 0.0}
    jsonl = Utterance(id="b", label="sad", meta={"distribution": {"Sadness": 3, "angry": 1}})  # counts
    assert gold_distribution(jsonl, iemocap4) == {"neutral": 0.0, "happy": 0.0, "sad": 0.75, "angry": 0.25}
    csv = Utterance(
        id="c", label="sad", meta={"distribution": '{"sad": 1, "bored": 1}'}
    )  # bored: not a label
    assert gold_distribution(csv, iemocap4)["sad"] == 1.0
    assert gold_distribution(Utterance(id="d", label="sad"), iemocap4) is None
    assert gold_distribution(Utterance(id="e", label="sad", meta={"distribution": ""}), iemocap4) is None
    for bad in ('{"sad": -1}', "not json", '["sad"]', {"sad": "a lot"}):
        with pytest.raises(DataError, match="utterance 'f'"):
            gold_distribution(Utterance(id="f", label="sad", meta={"distribution": bad}), iemocap4)


def test_temperature_fit_recovers_the_temperature_the_labels_were_drawn_at():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, size=(20000, 5))
    for true_t in (0.5, 2.5):
        drawn = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), true_t)
        gold = (drawn.cumsum(1) < rng.random((len(logits), 1))).sum(1)
        fitted = fit_temperature(logits, gold)
        assert fitted == pytest.approx(true_t, rel=0.05)
        # log-probabilities (logits shifted per row) give the same temperature
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True)) + rng.normal(size=(len(logits), 1))
        assert fit_temperature(log_probs, gold) == pytest.approx(fitted, rel=1e-4)
        # ... and scaling by it lowers the NLL of the unscaled probabilities
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        assert negative_log_likelihood(apply_temperature(probs, fitted), gold) < negative_log_likelihood(
            probs, gold
        )


def test_temperature_keeps_the_top_label_and_t_1_changes_nothing():
    scaled = apply_temperature(PROBS, 3.0)
    assert scaled.argmax(1).tolist() == PROBS.argmax(1).tolist()
    assert scaled.sum(1) == pytest.approx(np.ones(5)) and scaled.max() < PROBS.max()
    assert np.array_equal(apply_temperature(PROBS, 1.0), PROBS)
    with pytest.raises(ConfigError, match="> 0"):
        apply_temperature(PROBS, 0.0)
    with pytest.raises(DataError, match="finite"):
        fit_temperature(np.where(PROBS > 0, PROBS, -np.inf), GOLD_IDX)  # log(0): clip before the log


def test_load_temperature_from_a_number_a_run_or_a_checkpoint(tmp_path):
    assert load_temperature(None) == (1.0, "none") and load_temperature("none") == (1.0, "none")
    assert load_temperature("1.5") == (1.5, "given")
    for bad in ("0", "-2", "nan"):
        with pytest.raises(ConfigError, match="a number > 0"):
            load_temperature(bad)
    run = tmp_path / "dev-run"
    run.mkdir()
    (run / "metrics.json").write_text(
        json.dumps({"calibration": {"fitted_temperature": 1.8, "temperature": 1}})
    )
    assert load_temperature(str(run)) == (1.8, str(run / "metrics.json"))
    checkpoint = tmp_path / "ckpt"
    saved = save_temperature(checkpoint, 2.25, data="manifest:x", split="dev")
    assert json.loads(saved.read_text())["fitted_on"]["split"] == "dev"
    assert load_temperature("checkpoint", checkpoint)[0] == 2.25 == load_temperature(str(checkpoint))[0]
    with pytest.raises(ConfigError, match="has no temperature.json"):
        load_temperature("checkpoint", run)
    with pytest.raises(ConfigError, match="cannot read"):
        load_temperature(str(tmp_path / "missing"))
    (run / "metrics.json").write_text(json.dumps({"calibration": None}))  # a generate-mode run
    with pytest.raises(ConfigError, match="holds no fitted temperature"):
        load_temperature(str(run))


def test_reliability_diagram_is_a_png_written_atomically(tmp_path):
    path = plot_reliability_diagram(reliability_bins(PROBS, GOLD_IDX), tmp_path / "plots" / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["reliability.png"]  # no temporary file left
    empty = plot_reliability_diagram(reliability_bins(PROBS, GOLD_IDX, predicted=[3] * 5), tmp_path / "e.png")
    assert empty.is_file()  # every prediction a parse failure: an empty diagram, no error


def _rows(probs, gold, gold_dists=None):
    labels = [NEG, NEU, POS]
    rows = {}
    for i, (p, g) in enumerate(zip(probs, gold)):
        row = {
            "id": f"u{i}",
            "gold": g,
            "label": labels[int(np.argmax(p))],
            "distribution": dict(zip(labels, p)),
        }
        if gold_dists is not None:
            row["gold_distribution"] = dict(zip(labels, gold_dists[i]))
        rows[row["id"]] = row
    return rows


def test_compare_two_runs_point_estimates_match_the_metrics(tmp_path):
    sharper = apply_temperature(PROBS, 0.5)
    q = [[0.8, 0.2, 0.0], [0.2, 0.6, 0.2], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]
    rows_a, rows_b = _rows(PROBS, GOLD, q), _rows(sharper, GOLD)  # B's rows lack gold distributions
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.json").write_text(json.dumps({"calibration": {"temperature": 2.0}}))
    result = compare_calibration(
        tmp_path / "a", tmp_path / "b", rows_a, rows_b, list(rows_a), [NEG, NEU, POS], n_resamples=200
    )
    assert result["temperature_a"] == 1.0 and result["temperature_b"] == 2.0  # B's metrics.json applied 2
    b_probs = apply_temperature(sharper, 2.0)  # = PROBS again, up to the clipped zero
    for name, a, b in (
        ("ece", ECE, expected_calibration_error(b_probs, GOLD_IDX)),
        ("brier", BRIER, brier_score(b_probs, GOLD_IDX)),
        ("nll", NLL, negative_log_likelihood(b_probs, GOLD_IDX)),
    ):
        r = result["metrics"][name]
        assert (r["a"], r["b"], r["diff"]) == pytest.approx((a, b, b - a), abs=1e-9)
        assert r["low"] <= r["high"] and 0 < r["p"] <= 1
    expected = distribution_scores(PROBS, q)
    assert result["n_distribution"] == 5
    for name in ("bhattacharyya", "js_divergence", "r2"):
        assert result["metrics"][name]["a"] == pytest.approx(expected[name])
    text = calibration_comparison_markdown(result)
    assert "| ece | 0.3760 |" in text and "B scaled by T=2" in text and "| lower |" in text
    generated = {uid: {**row, "distribution": None} for uid, row in rows_a.items()}
    assert (
        compare_calibration(tmp_path / "a", tmp_path / "b", rows_a, generated, list(rows_a), [NEG, NEU, POS])
        is None
    )
