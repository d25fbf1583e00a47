"""Faithfulness swaps on the tiny model: exactly what reaches the model, the pairing rule, the scores."""

import json

import pytest
import torch
from conftest import build_tiny_llama

from emollm.cli import main
from emollm.data import Utterance
from emollm.errors import ConfigError
from emollm.evaluation.faithfulness import (
    FaithfulnessConfig,
    faithfulness,
    pair_utterances,
    swap_metrics,
)
from emollm.inputs import PromptBuilder, describe_utterances, encode_utterances, select_utterances
from emollm.modeling import EmotionLM
from emollm.modeling.adapters import AdapterSpec, build_adapters

pytestmark = pytest.mark.usefixtures("recipe_cache")  # prosody and frames computed once for the module


# -- pairing ------------------------------------------------------------------------------------------------


def utt(uid, speaker, text, label):
    return Utterance(id=uid, transcript=text, label=label, speaker=speaker)


# RAVDESS-like: actor a says "kids" in three emotions and "dogs" once; actor b only in one emotion
TOY = [
    utt("a1", "a", "Kids are talking", "sad"),
    utt("a2", "a", "kids  are TALKING", "angry"),  # the same sentence, written differently
    utt("a3", "a", "Kids are talking", "happy"),
    utt("a4", "a", "Dogs are sitting", "sad"),
    utt("b1", "b", "Kids are talking", "calm"),
    utt("b2", "b", "Dogs are sitting", "calm"),
]


def test_pairing_prefers_the_same_speaker_and_sentence_and_never_the_same_label():
    pairs, unpaired = pair_utterances(TOY, seed=0)
    assert [p.recipient.id for p in pairs] == [u.id for u in TOY]  # each a recipient once, in corpus order
    assert not unpaired
    tiers = {p.recipient.id: (p.donor.id, p.tier) for p in pairs}
    assert tiers["a1"][1] == tiers["a2"][1] == tiers["a3"][1] == "speaker+transcript"
    assert tiers["a1"][0] in ("a2", "a3") and tiers["a2"][0] in ("a1", "a3")
    assert tiers["a4"][0] in ("a2", "a3") and tiers["a4"][1] == "speaker"  # a1 is sad too
    assert tiers["b1"][1] == tiers["b2"][1] == "any"  # b has one label only
    assert all(p.donor.label != p.recipient.label for p in pairs)
    # donors spread: the three "kids" clips of a each donate once among themselves
    assert sorted(tiers[u][0] for u in ("a1", "a2", "a3")) == ["a1", "a2", "a3"]


def test_pairing_is_deterministic_under_a_seed_and_leaves_out_who_has_no_other_label():
    draw = lambda seed: [(p.recipient.id, p.donor.id) for p in pair_utterances(TOY, seed=seed)[0]]  # noqa: E731
    assert draw(0) == draw(0)
    assert len({tuple(draw(seed)) for seed in range(10)}) > 1  # the seed decides among equal candidates
    pairs, unpaired = pair_utterances([utt("x", "s", "Hi", "sad"), utt("y", "s", "Hi", "sad")])
    assert pairs == [] and [u.id for u in unpaired] == ["x", "y"]


# -- scores on a hand-made toy ------------------------------------------------------------------------------


def row(orig, swapped, gold="sad", donor="angry", tier="speaker", p=None, q=None, **extra):
    return {
        "gold": gold,
        "donor_gold": donor,
        "pairing": tier,
        "original": {"label": orig, "distribution": p, **extra.get("o", {})},
        "swapped": {"label": swapped, "distribution": q, **extra.get("s", {})},
    }


def test_scores_of_a_toy_in_score_mode():
    d = lambda sad, angry, happy: {"sad": sad, "angry": angry, "happy": happy}  # noqa: E731
    rows = [
        row("sad", "angry", p=d(0.6, 0.3, 0.1), q=d(0.2, 0.7, 0.1), tier="speaker+transcript"),  # to donor
        row("sad", "sad", p=d(0.5, 0.4, 0.1), q=d(0.5, 0.4, 0.1)),  # stayed, nothing moved
        row("sad", "happy", p=d(0.5, 0.1, 0.4), q=d(0.3, 0.1, 0.6)),  # changed, not to the donor's label
        row("angry", "angry", p=d(0.2, 0.7, 0.1), q=d(0.1, 0.8, 0.1)),  # stayed on the donor's label
        {**row("sad", "angry"), "incomplete": "no prosody description of x"},  # counted, not scored
    ]
    m = swap_metrics(rows, "score")
    assert m["n_pairs"] == 4 and m["incomplete"] == 1
    assert (m["changed"], m["moved_to_donor"], m["moved_elsewhere"], m["stayed"]) == (0.5, 0.25, 0.25, 0.5)
    low, high = m["ci95"]["changed"]
    assert low < 0.5 < high
    assert m["accuracy"] == {"original": 0.75, "swapped": 0.25}
    assert m["donor_label_rate"] == {"original": 0.25, "swapped": 0.5}
    assert m["mean_tv"] == pytest.approx((0.4 + 0.0 + 0.2 + 0.1) / 4)
    assert m["donor_probability_gain"] == pytest.approx((0.4 + 0.0 + 0.0 + 0.1) / 4)
    assert m["by_pairing"] == {
        "speaker+transcript": {"n": 1, "changed": 1.0, "moved_to_donor": 1.0},
        "speaker": {"n": 3, "changed": 1 / 3, "moved_to_donor": 0.0},
    }


def test_claims_are_pooled_over_rationales_in_generate_mode():
    def claims(t, f, u, salient, covered):
        c = {"n_true": t, "n_false": f, "n_unverifiable": u, "n_salient": salient, "n_covered": covered}
        return {**c, "precision": t / (t + f) if t + f else None, "coverage": None}

    rows = [
        row("sad", None, o={"claims": {"recipient": claims(3, 1, 0, 4, 2), "donor": claims(1, 3, 0, 2, 0)}},
            s={"claims": {"recipient": claims(0, 2, 1, 4, 0), "donor": claims(2, 0, 1, 2, 2)}}),
        row("sad", "angry", o={"claims": {"recipient": claims(0, 0, 2, 2, 0), "donor": None}},
            s={"claims": {"recipient": claims(1, 1, 0, 2, 1), "donor": claims(2, 0, 0, 2, 1)}}),
    ]  # fmt: skip
    m = swap_metrics(rows, "generate")
    assert "mean_tv" not in m
    assert (m["changed"], m["moved_to_donor"], m["moved_elsewhere"]) == (1.0, 0.5, 0.5)  # None is a change
    shown, control = m["claims"]["original"]["recipient"], m["claims"]["original"]["donor"]
    assert shown["precision"] == 0.75 and shown["coverage"] == pytest.approx(2 / 6)
    assert shown["rationales"] == 1 and shown["checked"] == 2
    assert control["precision"] == 0.25 and control["checked"] == 1  # None: no measures to check by
    assert m["claims"]["swapped"]["donor"]["precision"] == 1.0
    assert m["claims"]["swapped"]["recipient"]["precision"] == pytest.approx(1 / 4)


# -- what reaches the tiny model ----------------------------------------------------------------------------


@pytest.fixture
def text_lm(tiny_model, tiny_tokenizer):
    return EmotionLM(tiny_model, tiny_tokenizer, name="tiny")


def adapted_lm(tokenizer):
    spec = AdapterSpec("audio", "prosody_frames", "linear", 2)
    torch.manual_seed(0)
    model = build_tiny_llama(len(tokenizer))
    encoders, projectors = build_adapters([spec], model.get_input_embeddings().embedding_dim)
    return EmotionLM(
        model, tokenizer, "tiny-audio", encoders=encoders, projectors=projectors, adapters=[spec]
    )


def spy(monkeypatch, lm, method):
    """Record the prompts (and frames) each call of ``lm.<method>`` receives; the real method still runs."""
    calls = []
    real = getattr(lm, method)

    def recording(prompts, *args, **kwargs):
        calls.append({"prompts": list(prompts), "frames": kwargs.get("frames")})
        return real(prompts, *args, **kwargs)

    monkeypatch.setattr(lm, method, recording)
    return calls


def run(manifest, out, lm, **kw):
    kw.setdefault("batch_size", 2)
    config = FaithfulnessConfig(
        data=f"manifest:{manifest}", split="dev", labels="ravdess8", output=str(out), **kw
    )
    return faithfulness(config, lm=lm, progress=False)


def dev(manifest):
    return {u.id: u for u in select_utterances(f"manifest:{manifest}", "dev", labels="ravdess8")[1]}


def test_the_swapped_prompt_carries_the_donors_description_and_the_recipients_words(
    text_lm, speech_manifest, tmp_path, monkeypatch
):
    calls = spy(monkeypatch, text_lm, "score")
    result = run(speech_manifest, tmp_path / "run", text_lm, strategy="acoustic")
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    utts = dev(speech_manifest)
    assert len(rows) == 6 and result.summary["n_pairs"] == 6
    assert result.summary["settings"]["swap"] == ["description"]
    # the descriptions, made independently with the same statistics (fitted on the six clips)
    descriptions, _, _ = describe_utterances(list(utts.values()), progress=False)
    builder = PromptBuilder(text_lm.tokenizer, "acoustic", "ravdess8")
    expected = []
    for r in rows:
        recipient, donor = utts[r["id"]], utts[r["donor"]]
        assert donor.label != recipient.label and r["donor_gold"] == donor.label
        assert r["original"]["prosody"] == descriptions[recipient.id]
        assert r["swapped"]["prosody"] == descriptions[donor.id] != descriptions[recipient.id]
        swapped = builder.for_utterance(recipient, descriptions[donor.id], for_scoring=True)
        assert r["swapped"]["prompt"] == swapped
        assert f'"{recipient.transcript}"' in swapped and f'"{donor.transcript}"' not in swapped
        expected += [builder.for_utterance(recipient, descriptions[recipient.id], for_scoring=True), swapped]
    reached = {p for call in calls for p in call["prompts"]}
    assert reached == set(expected)  # nothing else reached the model (repeats are computed once)
    assert all(call["frames"] is None for call in calls)
    # the scores are read back from the rows
    changed = sum(r["original"]["label"] != r["swapped"]["label"] for r in rows) / 6
    assert result.summary["changed"] == pytest.approx(changed)
    assert 0 <= result.summary["mean_tv"] <= 1
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"config.json", "metrics.json", "report.md"}
    # the same command again predicts nothing; other settings are refused
    assert run(speech_manifest, tmp_path / "run", text_lm, strategy="acoustic").predicted == 0
    with pytest.raises(ConfigError, match="other settings"):
        run(speech_manifest, tmp_path / "run", text_lm, strategy="acoustic", seed=1)


def test_the_swapped_frames_are_the_donors_tensors_and_the_prompt_stays(
    tiny_tokenizer, speech_manifest, tmp_path, monkeypatch
):
    lm = adapted_lm(tiny_tokenizer)
    calls = spy(monkeypatch, lm, "score")
    result = run(speech_manifest, tmp_path / "frames", lm, strategy="minimal", batch_size=3)
    assert result.summary["settings"]["swap"] == ["frames"] and result.summary["n_pairs"] == 6
    utts = dev(speech_manifest)
    frames, _ = encode_utterances(lm, list(utts.values()), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "frames" / "predictions.jsonl").read_text().splitlines()]
    assert len(calls) == 2  # 3 pairs per call: 3 own inputs, then 3 swapped
    for call, batch in zip(calls, (rows[:3], rows[3:])):
        own, swapped = call["prompts"][:3], call["prompts"][3:]
        assert own == swapped == [r["original"]["prompt"] for r in batch]  # the words stay
        for k, r in enumerate(batch):
            assert torch.equal(call["frames"][k]["audio"], frames["audio"][r["id"]])
            assert torch.equal(call["frames"][3 + k]["audio"], frames["audio"][r["donor"]])
            assert not torch.equal(frames["audio"][r["id"]], frames["audio"][r["donor"]])


def test_a_model_with_both_inputs_swaps_only_what_it_is_told(
    tiny_tokenizer, speech_manifest, tmp_path, monkeypatch
):
    lm = adapted_lm(tiny_tokenizer)
    calls = spy(monkeypatch, lm, "score")
    result = run(
        speech_manifest, tmp_path / "desc", lm, strategy="acoustic", swap="description", batch_size=6
    )
    assert result.summary["settings"]["swap"] == ["description"]
    rows = [json.loads(line) for line in (tmp_path / "desc" / "predictions.jsonl").read_text().splitlines()]
    (call,) = calls
    frames, _ = encode_utterances(lm, list(dev(speech_manifest).values()), progress=False)
    for k, r in enumerate(rows):
        assert (
            call["prompts"][6 + k] == r["swapped"]["prompt"]
            and r["swapped"]["prosody"] in call["prompts"][6 + k]
        )
        assert torch.equal(call["frames"][6 + k]["audio"], frames["audio"][r["id"]])  # its own audio


def test_nothing_to_swap_is_refused(text_lm, tiny_tokenizer, speech_manifest, tmp_path):
    with pytest.raises(ConfigError, match="nothing to swap: .*strategy 'minimal' is shown no voice"):
        run(speech_manifest, tmp_path / "a", text_lm, strategy="minimal")
    with pytest.raises(ConfigError, match="swap is 'frames', but the model is shown no frames"):
        run(speech_manifest, tmp_path / "b", text_lm, strategy="acoustic", swap="frames")
    with pytest.raises(ConfigError, match="swap is 'description'"):
        run(
            speech_manifest,
            tmp_path / "c",
            adapted_lm(tiny_tokenizer),
            strategy="minimal",
            swap="description",
        )
    assert not (tmp_path / "a").exists()


def test_generate_mode_checks_the_rationale_against_both_clips(
    text_lm, speech_manifest, tmp_path, monkeypatch
):
    utts = dev(speech_manifest)
    descriptions, _, _ = describe_utterances(list(utts.values()), progress=False)

    def parrot(prompts, **kwargs):  # a model that reads the description in its prompt back
        found = [next(d for d in descriptions.values() if d and d in p) for p in prompts]
        return [f"<think>{d}</think><answer>sad</answer>" for d in found]

    monkeypatch.setattr(text_lm, "generate", parrot)
    result = run(speech_manifest, tmp_path / "gen", text_lm, strategy="acoustic", mode="generate")
    claims = result.summary["claims"]
    assert claims["original"]["recipient"]["precision"] == 1.0  # a description verifies by construction
    assert claims["swapped"]["donor"]["precision"] == 1.0  # the rationale reads the (donor's) prompt
    assert claims["swapped"]["recipient"]["precision"] < 1.0  # ... not the recipient's audio
    assert result.summary["changed"] == 0.0  # always "sad": the voice is not used for the label
    assert "| swapped | donor | 100.0 |" in (tmp_path / "gen" / "report.md").read_text()


def test_context_turns_default_to_the_checkpoints_own(speech_manifest, tmp_path):
    from emollm.modeling.checkpoint import CONFIG_NAME, FORMAT_VERSION

    def folder(name, reasoner):
        path = tmp_path / name
        path.mkdir()
        config = {
            "format_version": FORMAT_VERSION,
            "base_model": "tiny",
            "adapters": [],
            "reasoner": reasoner,
        }
        (path / CONFIG_NAME).write_text(json.dumps(config))
        return str(path)

    def context(model, **given):
        return FaithfulnessConfig(data=f"manifest:{speech_manifest}", model=model, **given).context

    trained_on_two = folder("two", {"context_turns": 2})
    assert context(trained_on_two) == 2  # as the checkpoint was trained, as evaluate asks it
    assert context(trained_on_two, context=0) == 0  # a given option wins
    assert context(folder("all", {"context_turns": None})) == 0  # "all turns" is no number: none
    assert context(folder("unsaved", {})) == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_NAME).write_text("{")
    with pytest.raises(ConfigError, match="cannot read the checkpoint config"):
        context(str(broken))


def test_cli_faithfulness(tiny_model_dir, speech_manifest, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["faithfulness", "--data", f"manifest:{speech_manifest}", "--split", "dev", "--labels", "ravdess8",
            "--model", str(tiny_model_dir), "--limit", "2", "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| changed |" in printed and "metrics.json" in printed
    assert json.loads((out / "metrics.json").read_text())["n_pairs"] == 2
    assert main([*argv, "--strategy", "minimal", "--output", str(tmp_path / "none")]) == 2
    assert "nothing to swap" in capsys.readouterr().err
