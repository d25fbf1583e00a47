"""The evaluation folder under stress: edited data, damaged files, a typo with --overwrite, two runs at once."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from emollm.api import EmotionReasoner
from emollm.cli import main
from emollm.errors import ConfigError, DataError, EmollmError
from emollm.evaluation import runs
from emollm.evaluation.harness import EvalConfig, evaluate
from emollm.modeling import EmotionLM

TEXTS = [
    ("u1", "I am so happy today!", "happy"),
    ("u2", "Leave me alone.", "angry"),
    ("u3", "It is raining again.", "sad"),
    ("u4", "The meeting is at noon.", "neutral"),
    ("u5", "What a wonderful gift!", "happy"),
    ("u6", "I hate waiting.", "angry"),
]


@pytest.fixture
def lm(tiny_model, tiny_tokenizer):
    return EmotionLM(tiny_model, tiny_tokenizer, name="tiny")


def write_manifest(path, rows, with_ids=True):
    lines = [
        {"id": i, "text": t, "label": lab} if with_ids else {"text": t, "label": lab} for i, t, lab in rows
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    return f"manifest:{path}"


def config(manifest, out, **kw):
    kw.setdefault("batch_size", 1)
    return EvalConfig(data=manifest, split="all", labels="iemocap4", output=str(out), **kw)


def read_rows(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def warnings_of(caplog):
    return " | ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# -- stale resume ------------------------------------------------------------------------------------------


def test_corrected_gold_labels_are_rescored_and_named(lm, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    first = evaluate(config(manifest, out), lm=lm, progress=False)
    predicted = {r["id"]: r["label"] for r in read_rows(out)}
    assert first.metrics.wa < 1  # the tiny random model gets some wrong
    # the "corrected" manifest: every gold label is what the model said, so a fresh run scores 100%
    write_manifest(tmp_path / "data.jsonl", [(i, t, predicted[i]) for i, t, _ in TEXTS])
    changed = sorted(i for i, _, lab in TEXTS if lab != predicted[i])
    caplog.set_level(logging.WARNING)
    again = evaluate(config(manifest, out), lm=lm, progress=False)
    assert again.metrics.wa == pytest.approx(1.0)
    assert json.loads((out / "metrics.json").read_text())["metrics"]["wa"] == pytest.approx(1.0)
    assert again.predicted == 0  # the inputs did not change: re-scored, not predicted again
    rows = read_rows(out)
    assert len(rows) == 6 and all(r["gold"] == predicted[r["id"]] for r in rows)
    message = warnings_of(caplog)
    assert f"{len(changed)} " in message and all(i in message for i in changed[:5])


def test_reordered_manifest_without_ids_is_predicted_again(lm, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS, with_ids=False)  # ids are row numbers
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    write_manifest(tmp_path / "data.jsonl", TEXTS[::-1], with_ids=False)
    caplog.set_level(logging.WARNING)
    again = evaluate(config(manifest, out), lm=lm, progress=False)
    assert again.predicted == 6 and "6 " in warnings_of(caplog)
    fresh = evaluate(config(manifest, tmp_path / "fresh"), lm=lm, progress=False)
    assert again.summary["metrics"] == fresh.summary["metrics"]
    rows = {r["id"]: r for r in read_rows(out)}
    assert len(rows) == len(read_rows(out)) == 6  # the stale rows are gone, not shadowed
    for number, (_, text, label) in enumerate(TEXTS[::-1], start=1):
        row = rows[f"data/{number}"]
        assert text in row["prompt"] and row["gold"] == label


def test_an_edited_transcript_is_predicted_again_alone(lm, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    before = {r["id"]: r for r in read_rows(out)}
    edited = [(i, "Leave me alone, please." if i == "u2" else t, lab) for i, t, lab in TEXTS]
    write_manifest(tmp_path / "data.jsonl", edited)
    caplog.set_level(logging.WARNING)
    again = evaluate(config(manifest, out), lm=lm, progress=False)
    assert again.predicted == 1 and "u2" in warnings_of(caplog)
    after = {r["id"]: r for r in read_rows(out)}
    assert "please" in after["u2"]["prompt"]
    assert all(after[i] == before[i] for i in before if i != "u2")


def test_a_folder_without_input_digests_is_not_silently_reused(lm, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    old = [{k: v for k, v in r.items() if k != "input_sha256"} for r in read_rows(out)]  # an older emollm's
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    caplog.set_level(logging.WARNING)
    again = evaluate(config(manifest, out), lm=lm, progress=False)
    assert again.predicted == 6 and "no input digest" in warnings_of(caplog)
    assert all(r.get("input_sha256") for r in read_rows(out))


# -- damaged predictions.jsonl -----------------------------------------------------------------------------


def test_a_corrupt_middle_line_costs_only_that_prediction(lm, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    good = [json.loads(line) for n, line in enumerate(lines, start=1) if n != 3]
    lines[2] = lines[2][:20] + "\x00garbage\n"  # line 3 (u3) damaged in place
    (out / "predictions.jsonl").write_text("".join(lines))
    caplog.set_level(logging.WARNING)
    again = evaluate(config(manifest, out), lm=lm, progress=False)
    assert again.predicted == 1  # u3 alone
    rows = read_rows(out)
    assert len(rows) == 6 and sorted(r["id"] for r in rows) == [f"u{i}" for i in range(1, 7)]
    assert [r for r in rows if r["id"] != "u3"] == good  # the 5 good rows kept as they were
    message = warnings_of(caplog)
    assert "line 3" in message and "half-written" not in message


def test_reading_another_runs_folder_skips_a_bad_line_and_keeps_the_rest(tmp_path, caplog):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "gold": "sad", "label": "sad"}\nnot json\n[1, 2]\n'
                    '{"id": "b", "gold": "sad", "label": "happy"}\n{"id": "c", "gol')  # fmt: skip
    caplog.set_level(logging.WARNING)
    rows = runs.read_predictions(path)
    assert sorted(rows) == ["a", "b"]
    assert "lines 2, 3" in warnings_of(caplog)
    assert path.read_text().endswith('{"id": "c", "gol')  # a reader does not repair


def test_each_prediction_line_is_one_write(tmp_path, monkeypatch):
    writes = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real(fd, data))
    path = tmp_path / "predictions.jsonl"
    runs.append_predictions(path, [{"id": "a", "text": "é" * 5000}, {"id": "b"}])
    assert len(writes) == 2 and all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in writes)
    assert list(runs.read_predictions(path)) == ["a", "b"]


# -- --overwrite keeps the old run until the new one has a prediction --------------------------------------


def test_overwrite_with_a_failing_run_keeps_the_old_folder(lm, tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    before = {name: (out / name).read_bytes() for name in ("config.json", "predictions.jsonl")}

    def refuses(self, items, **kw):  # e.g. a template that fails to render: found only when predicting
        raise ConfigError("this run cannot predict")

    monkeypatch.setattr(EmotionReasoner, "predict_batch", refuses)
    with pytest.raises(ConfigError, match="cannot predict"):
        evaluate(config(manifest, out, strategy="cot"), lm=lm, overwrite=True, progress=False)
    assert {name: (out / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    assert evaluate(config(manifest, out), lm=lm, progress=False).predicted == 0  # still resumable


def test_overwrite_with_a_wrong_normalizer_file_keeps_the_old_folder(lm, tmp_path):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    evaluate(config(manifest, out, strategy="acoustic"), lm=lm, progress=False)
    before = (out / "predictions.jsonl").read_bytes()
    typo = config(manifest, out, strategy="acoustic", normalizer=str(tmp_path / "data.jsonl"))  # a file...
    with pytest.raises(DataError, match="normaliser"):  # ... but not a normaliser
        evaluate(typo, lm=lm, overwrite=True, progress=False)
    assert (out / "predictions.jsonl").read_bytes() == before


def test_batch_size_0_is_refused_before_the_output_folder_is_made(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "never"
    argv = ["evaluate", "--data", manifest, "--split", "all", "--labels", "iemocap4", "--model", "tiny",
            "--output", str(out), "--batch_size", "0", "--overwrite", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "batch_size is 0; it must be >= 1" in capsys.readouterr().err
    assert not out.exists()


# -- one run at a time -------------------------------------------------------------------------------------


HOLD = """
import sys
from emollm.evaluation.runs import hold_run_folder
with hold_run_folder(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_folder_in_use_is_refused_naming_the_holder(lm, tmp_path):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    other = subprocess.Popen(  # another evaluation, writing there
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline() == "holding\n"
        with pytest.raises(EmollmError) as caught:
            evaluate(config(manifest, out), lm=lm, progress=False)
        assert not (out / "predictions.jsonl").exists()
    finally:
        other.communicate("", timeout=60)
    message = str(caught.value)
    assert f"pid {other.pid} on {socket.gethostname()}" in message and "--output" in message
    assert evaluate(config(manifest, out), lm=lm, progress=False).predicted == 6  # free again afterwards


def test_a_failed_first_run_leaves_no_folder_behind(lm, tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path / "data.jsonl", TEXTS)
    out = tmp_path / "run"
    monkeypatch.setattr(EmotionReasoner, "predict_batch", lambda self, items, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        evaluate(config(manifest, out), lm=lm, progress=False)
    assert not out.exists()
