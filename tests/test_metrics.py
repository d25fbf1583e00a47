import json
import math
import struct

import numpy as np
import pytest

from emollm.errors import ConfigError, DataError, EmollmError
from emollm.evaluation.metrics import (
    UNPARSED,
    EmotionMetrics,
    baselines,
    compute_metrics,
    confusion_markdown,
    plot_confusion_matrix,
    summary_markdown,
)

# sklearn must never warn (undefined metric, unknown class ...): every edge case is decided explicitly.
pytestmark = pytest.mark.filterwarnings("error")

NEG, NEU, POS = "negative", "neutral", "positive"  # sentiment3, in set order

# 10 examples, 3 classes. Confusion (rows gold, columns predicted neg / neu / pos):
#   neg (4): 3 1 0
#   neu (3): 2 1 0
#   pos (3): 0 1 2
BASE_TRUE = [NEG] * 4 + [NEU] * 3 + [POS] * 3
BASE_PRED = [NEG, NEG, NEG, NEU] + [NEU, NEG, NEG] + [POS, POS, NEU]


def test_hand_computed_three_classes():
    m = compute_metrics(BASE_TRUE, BASE_PRED, "sentiment3")
    # WA: correct 3 + 1 + 2 = 6 of 10.
    assert m.wa == pytest.approx(0.6)
    # Recall: neg 3/4, neu 1/3, pos 2/3 -> UA = (9/12 + 4/12 + 8/12) / 3 = 7/12.
    assert m.ua == pytest.approx(7 / 12)
    # Precision: neg predicted 5 times (3 right) 3/5; neu 3 times (1 right) 1/3; pos 2 times (2 right) 1.
    # F1 = 2TP / (2TP + FP + FN): neg 6/(6+2+1) = 2/3; neu 2/(2+2+2) = 1/3; pos 4/(4+0+1) = 4/5.
    assert m.per_class[NEG] == pytest.approx({"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "support": 4})
    assert m.per_class[NEU] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3, "support": 3})
    assert m.per_class[POS] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 4 / 5, "support": 3})
    # Macro F1 = (2/3 + 1/3 + 4/5) / 3 = 0.6.
    assert m.macro_f1 == pytest.approx(0.6)
    # Weighted F1 = (4 * 2/3 + 3 * 1/3 + 3 * 4/5) / 10 = (40/15 + 15/15 + 36/15) / 10 = 91/150.
    assert m.weighted_f1 == pytest.approx(91 / 150)
    assert m.n == 10
    assert m.parse_failures == 0 and m.parse_failure_rate == 0.0
    assert m.labels == (NEG, NEU, POS)
    assert m.confusion.dtype.kind == "i"
    assert m.confusion.tolist() == [[3, 1, 0, 0], [2, 1, 0, 0], [0, 1, 2, 0]]
    assert m.confusion_columns == [NEG, NEU, POS, UNPARSED]
    assert m.mean_true_prob is None and m.nll is None


def test_one_parse_failure_is_wrong_and_counted():
    pred = list(BASE_PRED)
    pred[8] = None  # a correct "positive" becomes unparsed
    m = compute_metrics(BASE_TRUE, pred, "sentiment3")
    # WA: 6 - 1 = 5 of 10.
    assert m.wa == pytest.approx(0.5)
    # Recall: neg 3/4, neu 1/3, pos 1/3 (the failure is a miss) -> UA = (9/12 + 4/12 + 4/12) / 3 = 17/36.
    assert m.ua == pytest.approx(17 / 36)
    # pos: TP 1, FP 0, FN 2 -> precision 1 (unchanged: the failure is no "positive" prediction), F1 2/4.
    assert m.per_class[POS] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})
    # Macro F1 = (2/3 + 1/3 + 1/2) / 3 = 1/2; weighted = (4 * 2/3 + 3 * 1/3 + 3 * 1/2) / 10 = 31/60.
    assert m.macro_f1 == pytest.approx(0.5)
    assert m.weighted_f1 == pytest.approx(31 / 60)
    assert m.parse_failures == 1
    assert m.parse_failure_rate == pytest.approx(0.1)
    assert m.n == 10  # never dropped
    assert m.confusion.tolist() == [[3, 1, 0, 0], [2, 1, 0, 0], [0, 1, 1, 1]]
    # Dropping the failure would have given WA 5/9: the failure really is scored as wrong.
    dropped = compute_metrics(BASE_TRUE[:8] + BASE_TRUE[9:], BASE_PRED[:8] + BASE_PRED[9:], "sentiment3")
    assert dropped.wa == pytest.approx(5 / 9) != m.wa


def test_all_parse_failures():
    m = compute_metrics(BASE_TRUE, [None] * 10, "sentiment3")
    assert (m.wa, m.ua, m.weighted_f1, m.macro_f1) == (0.0, 0.0, 0.0, 0.0)
    assert m.parse_failures == 10 and m.parse_failure_rate == 1.0
    assert m.confusion[:, -1].tolist() == [4, 3, 3]
    assert m.confusion[:, :-1].sum() == 0


def test_class_without_gold_examples_is_left_out_of_ua_and_macro_f1():
    # iemocap4 = neutral, happy, sad, angry; no gold "angry". 5 examples:
    #   happy -> happy, happy -> angry, sad -> sad, sad -> sad, neutral -> sad
    m = compute_metrics(
        ["happy", "happy", "sad", "sad", "neutral"], ["happy", "angry", "sad", "sad", "sad"], "iemocap4"
    )
    # WA 3/5. Recall: neutral 0, happy 1/2, sad 1 -> UA over the 3 gold classes = 1/2 (not 1.5/4).
    assert m.wa == pytest.approx(0.6)
    assert m.ua == pytest.approx(0.5)
    # F1: neutral 0 (never predicted: precision 0 by zero_division=0); happy TP1 FP0 FN1 -> 2/3;
    # sad TP2 FP1 FN0 -> 4/5. Macro over gold classes = (0 + 2/3 + 4/5) / 3 = 22/45.
    assert m.macro_f1 == pytest.approx(22 / 45)
    # Weighted = (1 * 0 + 2 * 2/3 + 2 * 4/5) / 5 = (4/3 + 8/5) / 5 = 44/75.
    assert m.weighted_f1 == pytest.approx(44 / 75)
    assert m.per_class["angry"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m.per_class["neutral"]["precision"] == 0.0
    assert m.confusion[3].tolist() == [0, 0, 0, 0, 0]  # the angry row exists, empty
    assert "no gold example" in m.to_markdown()


def test_labels_as_list_and_labelset():
    from emollm.labels import get_label_set

    by_name = compute_metrics(BASE_TRUE, BASE_PRED, "sentiment3")
    by_set = compute_metrics(BASE_TRUE, BASE_PRED, get_label_set("sentiment3"))
    by_list = compute_metrics(BASE_TRUE, BASE_PRED, [NEG, NEU, POS])
    assert by_name.to_dict() == by_set.to_dict() == by_list.to_dict()
    # Order of the list is the order of rows and columns.
    rev = compute_metrics(BASE_TRUE, BASE_PRED, [POS, NEU, NEG])
    assert rev.confusion.tolist() == [[2, 1, 0, 0], [0, 1, 2, 0], [0, 1, 3, 0]]
    assert rev.wa == by_name.wa and rev.ua == by_name.ua


def test_gold_label_outside_the_set_is_a_clear_error():
    with pytest.raises(DataError) as err:
        compute_metrics(["happy", "excited"], ["happy", "happy"], "iemocap4")
    message = str(err.value)
    assert "y_true" in message and "'excited'" in message
    assert "['neutral', 'happy', 'sad', 'angry']" in message
    with pytest.raises(DataError, match="y_true"):
        compute_metrics(["happy", None], ["happy", "happy"], "iemocap4")  # None is no gold label


def test_prediction_outside_the_set_is_a_clear_error():
    with pytest.raises(DataError) as err:
        compute_metrics(["happy", "sad"], ["happy", "Joyful"], "iemocap4")
    message = str(err.value)
    assert "y_pred" in message and "'Joyful'" in message and "normalize_label" in message
    assert isinstance(err.value, EmollmError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "labels", "error", "match"),
    [
        (["happy"], ["happy", "sad"], "iemocap4", DataError, "same length"),
        ([], [], "iemocap4", DataError, "empty"),
        ("happy", "happy", "iemocap4", DataError, "single string"),
        (["happy"], ["happy"], "no-such-set", ConfigError, "unknown label set"),
    ],
)
def test_malformed_input(y_true, y_pred, labels, error, match):
    with pytest.raises(error, match=match):
        compute_metrics(y_true, y_pred, labels)


def test_mean_true_prob_and_nll():
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # gold neg: 0.7
            [0.25, 0.5, 0.25],  # gold neu: 0.5
            [0.6, 0.2, 0.2],  # gold pos: 0.2
        ]
    )
    m = compute_metrics([NEG, NEU, POS], [NEG, NEU, NEG], "sentiment3", probabilities=probs)
    # mean = (0.7 + 0.5 + 0.2) / 3 = 1.4 / 3; NLL = -(ln 0.7 + ln 0.5 + ln 0.2) / 3.
    assert m.mean_true_prob == pytest.approx(1.4 / 3)
    assert m.nll == pytest.approx(-(math.log(0.7) + math.log(0.5) + math.log(0.2)) / 3)
    assert "p(true) %" in m.to_markdown() and "46.67" in m.to_markdown()


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.full((3, 2), 0.5), "shape"),
        (np.full((3, 3), 0.5), "sum to 1"),
        (np.array([[1.0, 0.0, 0.0], [np.nan, 0.5, 0.5], [1.0, 0.0, 0.0]]), "finite"),
        (np.array([[1.2, -0.2, 0.0]] * 3), "non-negative"),
    ],
)
def test_bad_probabilities(probs, match):
    with pytest.raises(DataError, match=match):
        compute_metrics([NEG, NEU, POS], [NEG, NEU, POS], "sentiment3", probabilities=probs)


def test_to_dict_is_json_serialisable():
    pred = list(BASE_PRED)
    pred[0] = None
    d = json.loads(json.dumps(compute_metrics(BASE_TRUE, pred, "sentiment3").to_dict()))
    assert d["wa"] == pytest.approx(0.5)
    assert d["parse_failures"] == 1
    assert d["confusion"][0] == [2, 1, 0, 1]
    assert d["confusion_columns"] == [NEG, NEU, POS, UNPARSED]
    assert d["per_class"][NEG]["support"] == 4
    assert d["labels"] == [NEG, NEU, POS]


def test_markdown_contains_the_numbers():
    pred = list(BASE_PRED)
    pred[8] = None
    text = compute_metrics(BASE_TRUE, pred, "sentiment3").to_markdown(name="zero-shot")
    # summary: WA 50.00, UA 17/36 = 47.22, weighted F1 31/60 = 51.67, macro F1 50.00, 1 failure = 10.00%
    assert "| zero-shot | 10 | 50.00 | 47.22 | 51.67 | 50.00 | 1 (10.00%) |" in text
    # per-class: positive precision 100, recall 33.33, F1 50
    assert "| positive | 100.00 | 33.33 | 50.00 | 3 |" in text
    # confusion, with the unparsed column
    assert f"| gold / predicted | {NEG} | {NEU} | {POS} | {UNPARSED} |" in text
    assert "| positive | 0 | 1 | 1 | 1 |" in text


def test_confusion_markdown_standalone():
    text = confusion_markdown([[3, 1], [0, 2]], ["happy", "sad"])
    assert text.splitlines() == [
        "| gold / predicted | happy | sad |",
        "|---|---:|---:|",
        "| happy | 3 | 1 |",
        "| sad | 0 | 2 |",
    ]
    with pytest.raises(ConfigError, match="shape"):
        confusion_markdown([[3, 1, 0, 0]], ["happy", "sad"])


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix_writes_a_png(tmp_path, normalize):
    import matplotlib.image

    pred = list(BASE_PRED)
    pred[8] = None
    m = compute_metrics(BASE_TRUE, pred, "sentiment3")
    path = tmp_path / "sub" / "confusion.png"
    out = plot_confusion_matrix(m, None, path, normalize=normalize, title="test")
    assert out == path and path.exists()
    width, height = _png_size(path)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (height, width) and image.shape[2] in (3, 4)
    assert width > 200 and height > 150
    assert image[..., :3].std() > 0  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]  # no temp file left behind


def test_plot_confusion_matrix_from_a_bare_matrix_replaces_the_file(tmp_path):
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    plot_confusion_matrix(np.array([[5, 1], [2, 0]]), ["happy", "sad"], path)  # a row of zeros is fine
    _png_size(path)
    with pytest.raises(ConfigError, match="needs labels"):
        plot_confusion_matrix(np.eye(2), None, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="shape"):
        plot_confusion_matrix(np.eye(3), ["happy", "sad"], tmp_path / "x.png")


# Known distribution for baselines: 6 neutral, 3 happy, 1 sad (iemocap4: k = 4, no angry).
DIST_TRUE = ["neutral"] * 6 + ["happy"] * 3 + ["sad"]


def test_chance_baseline():
    chance = baselines(DIST_TRUE, "iemocap4")["chance"]
    # Each example is guessed as each of the 4 labels with weight 1/4: WA = recall of every class = 1/4.
    assert chance.wa == pytest.approx(0.25) and chance.ua == pytest.approx(0.25)
    # Expected confusion: each gold row spread evenly, s_c / 4 per cell.
    assert chance.confusion == pytest.approx(
        np.array([[1.5] * 4 + [0], [0.75] * 4 + [0], [0.25] * 4 + [0], [0] * 5])
    )
    # Class c: predicted n/k = 2.5 times, TP s_c/4 -> precision s_c/10, recall 1/4,
    # F1 = 2 p r / (p + r): neutral 2(.6)(.25)/.85 = 6/17, happy 2(.3)(.25)/.55 = 3/11,
    # sad 2(.1)(.25)/.35 = 1/7.
    assert chance.macro_f1 == pytest.approx((6 / 17 + 3 / 11 + 1 / 7) / 3)
    assert chance.weighted_f1 == pytest.approx((6 * 6 / 17 + 3 * 3 / 11 + 1 / 7) / 10)
    assert chance.n == 10 and chance.parse_failures == 0
    assert chance.mean_true_prob == pytest.approx(0.25) and chance.nll == pytest.approx(math.log(4))
    assert "uniform" in chance.description
    json.dumps(chance.to_dict())
    assert "1.50" in chance.to_markdown()  # fractional expected counts


def test_majority_baseline_of_eval_and_train_labels():
    majority = baselines(DIST_TRUE, "iemocap4")["majority"]
    # Always "neutral": WA 6/10; recalls neutral 1, happy 0, sad 0 -> UA 1/3.
    # neutral F1: precision 6/10, recall 1 -> 2(.6)/1.6 = 3/4; weighted 6 * 3/4 / 10 = 0.45; macro 3/4 / 3.
    assert majority.wa == pytest.approx(0.6)
    assert majority.ua == pytest.approx(1 / 3)
    assert majority.weighted_f1 == pytest.approx(0.45)
    assert majority.macro_f1 == pytest.approx(0.25)
    assert "'neutral'" in majority.description and "evaluation" in majority.description

    from_train = baselines(DIST_TRUE, "iemocap4", train_labels=["happy", "happy", "sad"])["majority"]
    # Always "happy": WA 3/10, UA 1/3; happy F1: precision 3/10, recall 1 -> .6/1.3 = 6/13;
    # weighted 3 * 6/13 / 10 = 9/65; macro 6/13 / 3 = 2/13.
    assert from_train.wa == pytest.approx(0.3)
    assert from_train.ua == pytest.approx(1 / 3)
    assert from_train.weighted_f1 == pytest.approx(9 / 65)
    assert from_train.macro_f1 == pytest.approx(2 / 13)
    assert "'happy'" in from_train.description and "training" in from_train.description

    # Ties go to the label first in the set order.
    tie = baselines(["sad", "happy"], "iemocap4")["majority"]
    assert "'happy'" in tie.description
    with pytest.raises(DataError, match="train_labels"):
        baselines(DIST_TRUE, "iemocap4", train_labels=["bored"])


def test_summary_markdown_puts_a_model_next_to_its_baselines():
    b = baselines(BASE_TRUE, "sentiment3")
    model = compute_metrics(BASE_TRUE, BASE_PRED, "sentiment3")
    text = summary_markdown({"model": model, **b})
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[2].startswith("| model | 10 | 60.00 | 58.33 | 60.67 | 60.00 |")
    assert lines[3].startswith("| chance | 10 | 33.33 | 33.33 |")
    assert lines[4].startswith("| majority | 10 | 40.00 | 33.33 |")
    assert lines[2].endswith("| – | – |")  # the model has no probabilities, chance does
    assert isinstance(model, EmotionMetrics)
