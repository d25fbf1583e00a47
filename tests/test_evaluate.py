"""The evaluation harness on a tiny random Llama: outputs, metrics, resume, refusal of mismatched folders."""

import json
import random

import pytest

from emollm.api import EmotionReasoner
from emollm.audio import save_audio
from emollm.cli import main
from emollm.errors import ConfigError
from emollm.evaluation.harness import EvalConfig, evaluate
from emollm.modeling import EmotionLM, base

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


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t, "label": lab}) + "\n" for i, t, lab in TEXTS))
    return f"manifest:{path}"


def config(manifest, out, **kw):
    kw.setdefault("batch_size", 1)
    return EvalConfig(data=manifest, split="all", labels="iemocap4", output=str(out), **kw)


def read_rows(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_writes_every_output_and_metrics_match_the_predictions(lm, manifest, tmp_path):
    out = tmp_path / "run"
    result = evaluate(config(manifest, out), lm=lm, progress=False)
    assert {p.name for p in out.iterdir()} >= {
        "config.json", "predictions.jsonl", "metrics.json", "report.md", "confusion.png"
    }  # fmt: skip
    rows = read_rows(out)
    assert [r["id"] for r in rows] == [f"u{i}" for i in range(1, 7)]
    summary = json.loads((out / "metrics.json").read_text())
    correct = sum(r["label"] == r["gold"] for r in rows)
    assert summary["metrics"]["wa"] == pytest.approx(correct / 6)
    assert summary["metrics"]["mean_true_prob"] == pytest.approx(
        sum(r["distribution"][r["gold"]] for r in rows) / 6, abs=1e-6
    )
    assert summary["baselines"]["chance"]["wa"] == pytest.approx(0.25)
    assert result.predicted == 6 and summary["n"] == 6
    report = (out / "report.md").read_text()
    assert "| chance |" in report and "| majority |" in report and "(unparsed)" in report
    low, high = summary["ci95"]["wa"]
    assert low <= correct / 6 <= high and "95% bootstrap intervals" in report


def test_interrupted_run_resumes_without_duplicates(lm, manifest, tmp_path, monkeypatch):
    out = tmp_path / "run"
    from emollm.api import EmotionReasoner

    real = EmotionReasoner.predict_batch
    calls = {"n": 0}

    def dies_on_second_chunk(self, items, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, items, **kw)

    monkeypatch.setattr(EmotionReasoner, "predict_batch", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluate(config(manifest, out, batch_size=3), lm=lm, progress=False)  # killed in the 2nd batch
    assert len(read_rows(out)) == 3
    with open(out / "predictions.jsonl", "a") as handle:
        handle.write('{"id": "u5", "gold": "ha')  # killed in the middle of a write
    monkeypatch.setattr(EmotionReasoner, "predict_batch", real)
    result = evaluate(config(manifest, out, batch_size=3), lm=lm, progress=False)
    rows = read_rows(out)
    assert result.predicted == 3
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    again = evaluate(config(manifest, out, batch_size=3), lm=lm, progress=False)
    assert again.predicted == 0 and len(read_rows(out)) == 6


def test_other_settings_are_refused_unless_overwrite(lm, manifest, tmp_path):
    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    with pytest.raises(ConfigError, match=r"strategy: 'minimal' -> 'cot'.*--overwrite"):
        evaluate(config(manifest, out, strategy="cot"), lm=lm, progress=False)
    result = evaluate(config(manifest, out, strategy="cot"), lm=lm, overwrite=True, progress=False)
    assert result.predicted == 6 and len(read_rows(out)) == 6


def test_an_edited_template_is_refused_before_resuming(lm, manifest, tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text("Which of {{ labels | join(', ') }}? {{ transcript }}")
    out = tmp_path / "run"
    evaluate(config(manifest, out, strategy=str(template)), lm=lm, progress=False)
    template.write_text("Pick one of {{ labels | join(', ') }}: {{ transcript }}")
    with pytest.raises(ConfigError, match=r"template_sha256: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        evaluate(config(manifest, out, strategy=str(template)), lm=lm, progress=False)


def test_generate_mode_counts_parse_failures_and_format(lm, manifest, tmp_path, monkeypatch):
    answers = iter(
        ["<think>a</think><answer>happy</answer>", "banana", "sad", "x", "y", "<answer>angry</answer>"]
    )
    monkeypatch.setattr(lm, "generate", lambda prompts, **kw: [next(answers) for _ in prompts])
    out = tmp_path / "gen"
    result = evaluate(config(manifest, out, strategy="cot", mode="generate"), lm=lm, progress=False)
    assert result.metrics.parse_failures == 3
    assert result.summary["format_ok_rate"] == pytest.approx(1 / 6)
    assert result.metrics.wa == pytest.approx(3 / 6)  # u1 happy, u3 sad and u6 angry are right


def test_a_prompt_repeated_across_batches_is_computed_once(lm, tmp_path, monkeypatch):
    path = tmp_path / "repeats.jsonl"  # RAVDESS-like: many clips, few sentences
    rows = [{"id": f"r{i}", "text": ["Kids are talking.", "Dogs are sitting."][i % 2], "label": "sad"}
            for i in range(6)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = []
    real = lm.score
    monkeypatch.setattr(
        lm, "score", lambda prompts, *a, **k: scored.append(len(prompts)) or real(prompts, *a, **k)
    )
    evaluate(config(f"manifest:{path}", tmp_path / "run"), lm=lm, progress=False)  # batches of 1
    assert scored == [1, 1]  # two sentences, two model calls, six predictions
    predictions = read_rows(tmp_path / "run")
    assert len(predictions) == 6
    fresh = EmotionReasoner(lm, labels="iemocap4", strategy="minimal", mode="score").predict_batch(
        [{"transcript": r["text"]} for r in rows[:2]]
    )
    for row in predictions:
        expected = fresh[int(row["id"][1:]) % 2].distribution  # its own sentence's, computed afresh
        assert row["distribution"] == pytest.approx(expected, abs=1e-6)


def test_limit_draws_a_seeded_sample_in_corpus_order(lm, manifest, tmp_path):
    a = evaluate(config(manifest, tmp_path / "a", limit=3), lm=lm, progress=False)
    b = evaluate(config(manifest, tmp_path / "b", limit=3), lm=lm, progress=False)
    ids = [r["id"] for r in read_rows(a.output_dir)]
    assert ids == [r["id"] for r in read_rows(b.output_dir)] and len(ids) == 3
    expected = sorted(random.Random(0).sample(range(6), 3))  # the documented draw, kept in corpus order
    assert ids == [f"u{i + 1}" for i in expected]


def test_acoustic_prompts_carry_the_prosody_of_each_clip(lm, tmp_path, emollm_cache):
    from emollm.prosody.synth import synthesize

    rows = []
    for i, (pitch, rate) in enumerate([(1.0, 150), (1.6, 230), (0.8, 120)]):
        audio, _ = synthesize("Kids are talking by the door", pitch=pitch, words_per_minute=rate)
        save_audio(audio, tmp_path / f"clip{i}.wav")
        rows.append({"id": f"c{i}", "path": f"clip{i}.wav", "text": "Kids are talking by the door",
                     "label": ["neutral", "happy", "sad"][i], "speaker": "s1"})  # fmt: skip
    path = tmp_path / "speech.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(f"manifest:{path}", tmp_path / "ac", strategy="acoustic")
    result = evaluate(cfg, lm=lm, progress=False)
    out = read_rows(result.output_dir)
    assert result.summary["with_prosody"] == 3
    assert all(r["prosody"] and r["prosody"] in r["prompt"] for r in out)
    assert len({r["prosody"] for r in out}) == 3  # each clip described from its own audio
    off = evaluate(
        config(f"manifest:{path}", tmp_path / "off", strategy="acoustic", prosody=False),
        lm=lm,
        progress=False,
    )
    assert off.summary["with_prosody"] == 0
    assert all("no audio measurements are available" in r["prompt"] for r in read_rows(off.output_dir))


def test_cli_evaluate(tmp_path, tiny_model, tiny_tokenizer, manifest, capsys):
    folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    out = tmp_path / "cli"
    argv = ["evaluate", "--data", manifest, "--split", "all", "--labels", "iemocap4", "--model", str(folder),
            "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| model | 6 |" in printed and "metrics.json" in printed
    assert main([*argv, "--strategy", "cot"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_model_loaded_here_takes_the_dtype_and_device_and_records_the_dtype(
    tiny_model, tiny_tokenizer, manifest, tmp_path
):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(str(folder))
    tiny_tokenizer.save_pretrained(str(folder))
    out = tmp_path / "run"
    run = config(manifest, out, model=str(folder), dtype="bfloat16", device="cpu", limit=2)
    result = evaluate(run, progress=False)
    assert result.predicted == 2
    assert json.loads((out / "config.json").read_text())["settings"]["dtype"] == "bfloat16"
    with pytest.raises(ConfigError, match="dtype: 'bfloat16' -> 'float32'"):  # other numbers: not resumed
        evaluate(config(manifest, out, model=str(folder), device="cpu", limit=2), progress=False)
    with pytest.raises(ConfigError, match="dtype is 'int8'; accepted: float32, bfloat16, float16"):
        config(manifest, tmp_path / "x", model=str(folder), dtype="int8")


def test_every_bad_setting_is_reported_at_once_before_any_work(tmp_path):
    with pytest.raises(ConfigError) as caught:
        EvalConfig(
            data=f"manifest:{tmp_path / 'missing.csv'}",
            mode="scor",
            context=-1,
            strategy="fancy",
            labels="nope",
            normalizer="speakers",
        )
    message = str(caught.value)
    for expected in (
        "mode is 'scor'; accepted: score, generate",
        "no manifest file",
        "context is -1; it must be >= 0",
        "unknown prompt strategy 'fancy'",
        "unknown label set 'nope'",
        "normalizer is 'speakers'",
    ):
        assert expected in message
    assert EvalConfig(data="ravdess", labels="calm, angry").label_set() == ["calm", "angry"]


# -- probabilities: calibration, gold distributions, temperature scaling ----------------------------------

LABELS = ["neutral", "happy", "sad", "angry"]  # iemocap4, in set order


def probabilities_of(rows):
    import numpy as np

    probs = np.array([[r["distribution"][label] for label in LABELS] for r in rows])
    return probs / probs.sum(axis=1, keepdims=True), np.array([LABELS.index(r["gold"]) for r in rows])


def test_score_mode_writes_calibration_metrics_and_the_reliability_diagram(lm, manifest, tmp_path):
    import numpy as np

    from emollm.evaluation.calibration import (
        brier_score,
        expected_calibration_error,
        fit_temperature,
        negative_log_likelihood,
    )

    out = tmp_path / "run"
    evaluate(config(manifest, out), lm=lm, progress=False)
    summary = json.loads((out / "metrics.json").read_text())
    probs, gold = probabilities_of(read_rows(out))
    m = summary["metrics"]
    assert m["ece"] == pytest.approx(expected_calibration_error(probs, gold))
    assert m["brier"] == pytest.approx(brier_score(probs, gold))
    assert m["nll"] == pytest.approx(negative_log_likelihood(probs, gold))
    calibration = summary["calibration"]
    assert calibration["temperature"] == 1.0 and calibration["unscaled"] is None
    assert calibration["n_bins"] == 15 and sum(b["count"] for b in calibration["bins"]) == 6
    assert calibration["fitted_temperature"] == pytest.approx(fit_temperature(np.log(probs), gold))
    assert summary["distribution"] is None  # the manifest has no gold distributions
    assert summary["baselines"]["chance"]["brier"] == pytest.approx(0.75)
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Probabilities" in report and "reliability.png" in report and "Bhattacharyya" not in report


def test_generate_mode_has_no_probabilistic_scores(lm, manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(lm, "generate", lambda prompts, **kw: ["<answer>happy</answer>" for _ in prompts])
    out = tmp_path / "gen"
    result = evaluate(config(manifest, out, strategy="cot", mode="generate"), lm=lm, progress=False)
    summary = json.loads((out / "metrics.json").read_text())
    assert [summary["metrics"][key] for key in ("ece", "brier", "nll", "mean_true_prob")] == [None] * 4
    assert summary["calibration"] is None and summary["distribution"] is None
    assert (
        not (out / "reliability.png").exists() and "## Probabilities" not in (out / "report.md").read_text()
    )
    assert result.metrics.ece is None


def test_gold_distributions_are_scored_where_the_manifest_has_them(lm, tmp_path):
    from emollm.evaluation.calibration import distribution_scores

    votes = {
        "u1": {"happy": 2, "excited": 1, "neutral": 1},
        "u2": {"angry": 1},
        "u4": '{"neutral": 1, "sad": 1}',
    }
    path = tmp_path / "votes.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"id": i, "text": t, "label": lab, **({"distribution": votes[i]} if i in votes else {})}
            )
            + "\n"
            for i, t, lab in TEXTS
        )
    )
    out = tmp_path / "run"
    result = evaluate(config(f"manifest:{path}", out), lm=lm, progress=False)
    rows = read_rows(out)
    assert rows[0]["gold_distribution"] == {"neutral": 0.25, "happy": 0.75, "sad": 0.0, "angry": 0.0}
    assert "gold_distribution" not in rows[2]  # u3 has none
    have = [r for r in rows if "gold_distribution" in r]
    probs, _ = probabilities_of(have)
    expected = distribution_scores(probs, [[r["gold_distribution"][label] for label in LABELS] for r in have])
    assert result.summary["distribution"] == pytest.approx(expected) and expected["n"] == 3
    assert "Bhattacharyya coefficient" in (out / "report.md").read_text()


def test_a_temperature_rescales_the_probabilities_but_never_the_labels(lm, manifest, tmp_path):
    from emollm.evaluation.calibration import apply_temperature, negative_log_likelihood

    out = tmp_path / "run"
    plain = evaluate(config(manifest, out), lm=lm, progress=False)
    scaled = evaluate(config(manifest, out, temperature_scaling="0.5"), lm=lm, progress=False)
    assert scaled.predicted == 0  # not a setting of the predictions: the folder is resumed as it is
    assert (scaled.metrics.wa, scaled.metrics.ua) == (plain.metrics.wa, plain.metrics.ua)
    probs, gold = probabilities_of(read_rows(out))
    assert scaled.metrics.nll == pytest.approx(negative_log_likelihood(apply_temperature(probs, 0.5), gold))
    calibration = scaled.summary["calibration"]
    assert (calibration["temperature"], calibration["temperature_source"]) == (0.5, "given")
    assert calibration["unscaled"]["nll"] == pytest.approx(plain.metrics.nll)
    assert calibration["fitted_temperature"] == pytest.approx(
        plain.summary["calibration"]["fitted_temperature"]
    )
    assert "With temperature 0.5 (given)" in (out / "report.md").read_text()
    # a dev run's fitted temperature, applied to another run
    other = evaluate(
        config(manifest, tmp_path / "other", temperature_scaling=str(out)), lm=lm, progress=False
    )
    assert other.summary["calibration"]["temperature"] == pytest.approx(calibration["fitted_temperature"])


def test_a_temperature_fitted_on_dev_is_saved_with_the_checkpoint(
    tmp_path, tiny_model, tiny_tokenizer, manifest
):
    from emollm.cli import evaluate_parser
    from emollm.modeling.checkpoint import save_checkpoint

    base_folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    checkpoint = save_checkpoint(tiny_model, tmp_path / "ckpt", base_model=str(base_folder), save_lora=False)
    dev = evaluate(
        config(manifest, tmp_path / "dev", model=str(checkpoint), device="cpu", save_temperature=True),
        progress=False,
    )
    saved = json.loads((checkpoint / "temperature.json").read_text())
    assert saved["temperature"] == dev.summary["calibration"]["fitted_temperature"]
    assert saved["fitted_on"]["n"] == 6 and dev.summary["calibration"]["saved_to"].endswith(
        "temperature.json"
    )
    test = evaluate(
        config(
            manifest, tmp_path / "test", model=str(checkpoint), device="cpu", temperature_scaling="checkpoint"
        ),
        progress=False,
    )
    assert test.summary["calibration"]["temperature"] == saved["temperature"]
    assert test.summary["calibration"]["temperature_source"].endswith("temperature.json")
    with pytest.raises(ConfigError, match="save_temperature needs mode score and a checkpoint folder"):
        config(manifest, tmp_path / "x", save_temperature=True)  # the default model is no checkpoint
    with pytest.raises(ConfigError, match="a temperature must be a number > 0"):
        config(manifest, tmp_path / "x", temperature_scaling="-1")
    with pytest.raises(ConfigError, match="has no temperature.json"):
        evaluate(config(manifest, tmp_path / "y", temperature_scaling="checkpoint"), progress=False)
    args = evaluate_parser().parse_args(
        ["--data", "ravdess", "--temperature-scaling", "1.5", "--save-temperature"]
    )
    assert (args.temperature_scaling, args.save_temperature) == ("1.5", True)


def test_compare_reads_the_probabilities_of_two_runs(lm, manifest, tmp_path):
    from emollm.evaluation.calibration import compare_calibration
    from emollm.evaluation.runs import read_predictions

    runs = {}
    for name, calibrate in (("a", False), ("b", True)):
        evaluate(config(manifest, tmp_path / name, calibrate=calibrate), lm=lm, progress=False)
        runs[name] = read_predictions(tmp_path / name / "predictions.jsonl")
    result = compare_calibration(
        tmp_path / "a", tmp_path / "b", runs["a"], runs["b"], list(runs["a"]), LABELS, n_resamples=100
    )
    for name in ("a", "b"):
        scores = json.loads((tmp_path / name / "metrics.json").read_text())["metrics"]
        for metric in ("ece", "brier", "nll"):
            assert result["metrics"][metric][name] == pytest.approx(scores[metric])
    assert result["n"] == 6 and result["n_distribution"] == 0 and "r2" not in result["metrics"]


# -- a checkpoint is asked as it was trained -----------------------------------------------------------------

TRAINED = {"labels": "iemocap4", "strategy": "cot", "prosody": True, "prosody_style": "utterance",
           "context_turns": 1, "mode": "generate", "max_new_tokens": 3}  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path, tiny_model, tiny_tokenizer):
    from emollm.modeling.checkpoint import save_checkpoint

    def save(reasoner=TRAINED, name="ckpt"):
        base_folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
        return save_checkpoint(tiny_model, tmp_path / name, base_model=str(base_folder), reasoner=reasoner,
                               save_lora=False)  # fmt: skip

    return save


@pytest.fixture
def described(monkeypatch):
    """Fake prosody descriptions (the manifest has no audio); records the style each call asked for."""
    from emollm.evaluation import harness

    styles = []

    def describe(utterances, *, todo=None, style="vowel", **kw):
        styles.append(style)
        return {u.id: f"pitch of {u.id} in {style} style" for u in todo or utterances}, {}, None

    monkeypatch.setattr(harness, "describe_utterances", describe)
    return styles


def test_a_checkpoint_without_options_is_asked_with_its_saved_prompt_settings(
    checkpoint, manifest, tmp_path, described
):
    folder = checkpoint()
    out = tmp_path / "run"
    run = config(manifest, out, model=str(folder), device="cpu")
    assert (run.strategy, run.mode, run.context, run.prosody, run.prosody_style, run.max_new_tokens) == (
        "cot", "generate", 1, True, "utterance", 3
    )  # fmt: skip
    taken = ["strategy", "mode", "context", "prosody", "prosody_style", "max_new_tokens"]
    assert run.from_checkpoint == taken
    evaluate(run, progress=False)
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert {k: settings[k] for k in ("strategy", "mode", "context_turns", "prosody", "prosody_style")} == {
        "strategy": "cot", "mode": "generate", "context_turns": 1, "prosody": True, "prosody_style": "utterance"
    }  # fmt: skip
    assert settings["max_new_tokens"] == 3 and described == ["utterance"]
    asked = EmotionReasoner.from_pretrained(str(folder))  # predict's reasoner: the same prompts
    for row in read_rows(out):
        text = dict((i, t) for i, t, _ in TEXTS)[row["id"]]
        assert row["prompt"] == asked.build_prompt(text, prosody=f"pitch of {row['id']} in utterance style")
        assert "<think>" in row["prompt"] and row["completion"] is not None  # cot, generated


def test_options_given_win_over_the_checkpoint_and_the_same_settings_resume(
    checkpoint, manifest, tmp_path, described
):
    folder = checkpoint()
    out = tmp_path / "run"
    given = config(manifest, out, model=str(folder), device="cpu", strategy="minimal", mode="score",
                   prosody=False, prosody_style="vowel", context=0)  # fmt: skip
    assert given.from_checkpoint == ["max_new_tokens"]
    evaluate(given, progress=False)
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert (settings["strategy"], settings["mode"], settings["prosody"]) == ("minimal", "score", False)
    assert described == [] and all(r["prosody"] is None for r in read_rows(out))
    # a folder evaluated before the checkpoint's settings were read (the old defaults): refused, not mixed
    with pytest.raises(ConfigError, match=r"strategy: 'minimal' -> 'cot'"):
        evaluate(config(manifest, out, model=str(folder), device="cpu"), progress=False)
    # the checkpoint's own settings, left out or given: one run, resumed
    first = evaluate(config(manifest, tmp_path / "own", model=str(folder), device="cpu"), progress=False)
    spelled = {k: v for k, v in TRAINED.items() if k not in ("labels", "context_turns")}
    again = evaluate(
        config(manifest, tmp_path / "own", model=str(folder), device="cpu", context=1, **spelled),
        progress=False,
    )
    assert first.predicted == 6 and again.predicted == 0


def test_saved_settings_the_harness_cannot_use_fall_back(checkpoint, manifest, tmp_path):
    folder = checkpoint({"mode": "both", "calibrate": True, "context_turns": None}, "both")
    both = config(manifest, tmp_path / "a", model=str(folder))
    assert (both.mode, both.calibrate, both.context, both.strategy) == ("score", True, 0, "minimal")
    assert both.from_checkpoint == ["calibrate"]  # "both" scores; "all turns" is no number of turns
    generating = config(manifest, tmp_path / "b", model=str(folder), mode="generate")  # no calibration
    assert (generating.calibrate, generating.from_checkpoint) == (False, [])
    broken = checkpoint({"strategy": "gone.jinja"}, "broken")
    with pytest.raises(ConfigError, match=r"gone\.jinja.*\(strategy from the checkpoint"):
        config(manifest, tmp_path / "c", model=str(broken))
    (broken / "emollm_config.json").write_text('{"format_version": 99}')
    with pytest.raises(ConfigError, match="format_version 99"):
        config(manifest, tmp_path / "d", model=str(broken))


def test_cli_evaluate_says_what_came_from_the_checkpoint_and_takes_default(
    checkpoint, manifest, tmp_path, capsys, described
):
    from emollm.modeling.base import DEFAULT_MODEL

    folder = checkpoint({**TRAINED, "mode": "score"})
    argv = ["evaluate", "--data", manifest, "--split", "all", "--labels", "iemocap4", "--model", str(folder),
            "--output", str(tmp_path / "cli"), "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "as the checkpoint was trained: strategy 'cot', mode 'score', context 1" in err
    assert "prosody_style 'utterance'" in err and described == ["utterance"]
    assert main([*argv, "--strategy", "minimal"]) == 2  # a flag wins: another prompt than the folder's
    assert "strategy: 'cot' -> 'minimal'" in capsys.readouterr().err
    assert EvalConfig(data="ravdess", model="default").model == DEFAULT_MODEL
