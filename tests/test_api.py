"""EmotionReasoner on a tiny random Llama: wiring, modes, prosody in the prompt, batching."""

import itertools

import pytest
import torch

from emollm.api import EmotionReasoner
from emollm.data.schema import Turn, Utterance
from emollm.errors import AudioError, ConfigError
from emollm.modeling import EmotionLM, score_labels
from emollm.prosody.synth import synthesize

RAVDESS8 = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


@pytest.fixture
def lm(tiny_model, tiny_tokenizer):
    return EmotionLM(tiny_model, tiny_tokenizer, name="tiny")


@pytest.fixture(scope="module")
def speech():
    audio, _ = synthesize("Kids are talking by the door", pitch=1.4, words_per_minute=200)
    return audio


def test_text_only_both_modes(lm):
    reasoner = EmotionReasoner(lm, labels="ravdess8", strategy="cot", max_new_tokens=6)
    pred = reasoner.predict(transcript="Leave me alone!", context=[("Ann", "Hi."), Turn("Bob", "Go away.")])
    assert list(pred.distribution) == RAVDESS8
    assert abs(sum(pred.distribution.values()) - 1) < 1e-5
    assert pred.label == max(pred.distribution, key=pred.distribution.get)
    assert pred.completion is not None and pred.prosody is None
    assert "text only: no audio was given" in pred.notes
    assert '"Leave me alone!"' in pred.prompt and "Ann: Hi." in pred.prompt and "Bob: Go away." in pred.prompt


def test_score_mode_distribution_is_softmax_after_the_answer_tag(lm, tiny_model, tiny_tokenizer):
    reasoner = EmotionReasoner(lm, labels="ravdess8", strategy="cot", mode="score")
    pred = reasoner.predict(transcript="I won!")
    assert pred.completion is None and pred.rationale == "" and pred.format_ok is None
    # cot asks for <answer> tags, so the label is scored right after "<answer>" in the assistant turn
    assert pred.prompt.endswith("<|im_start|>assistant\n<answer>")
    expected = score_labels(tiny_model, tiny_tokenizer, [pred.prompt], RAVDESS8)[0].softmax(-1)
    assert torch.allclose(torch.tensor(list(pred.distribution.values())), expected, atol=1e-6)
    minimal = EmotionReasoner(lm, labels="ravdess8", strategy="minimal", mode="score").predict(transcript="x")
    assert minimal.prompt.endswith("<|im_start|>assistant\n")


def test_generate_mode_label_is_the_parsed_answer(lm, monkeypatch):
    reasoner = EmotionReasoner(lm, labels="ravdess8", strategy="cot", mode="generate")
    monkeypatch.setattr(
        lm, "generate", lambda prompts, **kw: ["<think>Shouting.</think><answer>furious</answer>"]
    )
    pred = reasoner.predict(transcript="Get out!")
    assert (pred.label, pred.rationale, pred.format_ok, pred.distribution) == (
        "angry",
        "Shouting.",
        True,
        None,
    )
    monkeypatch.setattr(lm, "generate", lambda prompts, **kw: ["no idea"])
    assert reasoner.predict(transcript="Get out!").label is None  # a parse failure stays visible


def test_audio_gives_a_prosody_description_in_the_acoustic_prompt(lm, speech):
    reasoner = EmotionReasoner(lm, labels="ravdess8", strategy="acoustic", mode="score")
    pred = reasoner.predict(audio=speech, transcript="Kids are talking by the door")
    assert pred.prosody and "Speech rate" in pred.prosody
    assert f"How it was said (measured from the audio): {pred.prosody}" in pred.prompt
    # minimal and cot are text-only unless prosody is switched on
    text_only = EmotionReasoner(lm, labels="ravdess8", strategy="minimal", mode="score")
    assert text_only.predict(audio=speech, transcript="Kids").prosody is None
    switched = EmotionReasoner(lm, labels="ravdess8", strategy="minimal", mode="score", prosody=True)
    assert switched.predict(audio=speech, transcript="Kids are talking by the door").prosody == pred.prosody


def test_audio_without_transcript_uses_syllable_nuclei(lm, speech):
    pred = EmotionReasoner(lm, labels="ravdess8", mode="score").predict(audio=speech, asr="none")
    assert pred.prosody
    assert "(transcript unknown)" in pred.prompt
    assert any("no transcript" in note for note in pred.notes)


def test_batch_equals_one_by_one(lm):
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="cot", max_new_tokens=5, batch_size=3)
    texts = ["a", "a much longer utterance than the others", "mid length one", "a"]
    batched = reasoner.predict_batch([{"transcript": t} for t in texts])
    single = [reasoner.predict(transcript=t) for t in texts]
    for b, s in zip(batched, single):
        assert b.completion == s.completion
        for label in b.distribution:
            assert abs(b.distribution[label] - s.distribution[label]) < 1e-5
    assert batched[0] == batched[3]  # identical prompts are computed once and give the same result


def test_cache_computes_a_prompt_once_across_calls(lm, monkeypatch):
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="cot", mode="both", max_new_tokens=5)
    asked = {"score": [], "generate": []}
    for name in asked:
        real = getattr(lm, name)

        def spy(prompts, *args, _real=real, _name=name, **kwargs):
            asked[_name].append(len(prompts))
            return _real(prompts, *args, **kwargs)

        monkeypatch.setattr(lm, name, spy)
    cache = {}
    reasoner.predict_batch([{"transcript": t} for t in ["a", "b"]], cache=cache)
    second = reasoner.predict_batch([{"transcript": t} for t in ["b", "c", "a", "c"]], cache=cache)
    assert asked == {"score": [2, 1], "generate": [2, 1]}  # only "c" was new to the second call
    reasoner.predict_batch([{"transcript": t} for t in ["a", "c"]], cache=cache)
    assert asked == {"score": [2, 1], "generate": [2, 1]}  # nothing new: no model call at all
    fresh = reasoner.predict_batch([{"transcript": t} for t in ["b", "c", "a", "c"]])
    for cached, computed in zip(second, fresh):
        assert cached.completion == computed.completion
        assert cached.distribution == pytest.approx(computed.distribution, abs=1e-5)

    normalized = EmotionReasoner(lm, labels="iemocap4", strategy="cot", mode="score", length_normalize=True)
    normalized.predict_batch([{"transcript": "a"}], cache=cache)
    assert asked["score"] == [2, 1, 3, 1]  # the same prompt under other settings is another entry
    # calibration is this reasoner's own (its content-free prompt), applied after the shared lookup
    calibrated = EmotionReasoner(lm, labels="iemocap4", strategy="acoustic", mode="score", calibrate=True)
    plain = EmotionReasoner(lm, labels="iemocap4", strategy="acoustic", mode="score")
    no_prosody = EmotionReasoner(
        lm, labels="iemocap4", strategy="acoustic", mode="score", calibrate=True, prosody=False
    )
    shared = {}
    for reasoner_ in (plain, calibrated, no_prosody):
        alone = reasoner_.predict_batch([{"transcript": "a"}])[0].distribution
        assert reasoner_.predict_batch([{"transcript": "a"}], cache=shared)[0].distribution == pytest.approx(
            alone, abs=1e-6
        )
    assert calibrated.content_free_scores().tolist() != no_prosody.content_free_scores().tolist()
    sampling = EmotionReasoner(lm, labels="iemocap4", strategy="cot", max_new_tokens=5, do_sample=True)
    sampling.predict_batch([{"transcript": "a"}], cache=cache)
    assert asked["generate"] == [2, 1, 3, 1]  # sampled text is not a function of the prompt: never cached


def test_utterances_name_their_speaker_only_in_conversations(lm):
    reasoner = EmotionReasoner(lm, labels="meld7", strategy="minimal", mode="score")
    talk = Utterance(
        "meld/1", transcript="Hi.", speaker="meld/Ross", dialogue_id="d1", context=[Turn("Joey", "Yo")]
    )
    alone = Utterance("ravdess/1", transcript="Hi.", speaker="ravdess/12")
    first, second = reasoner.predict_batch([talk, alone])
    assert "Utterance by Ross:" in first.prompt and "Joey: Yo" in first.prompt
    assert "Utterance:" in second.prompt and "12" not in second.prompt.split("Utterance")[1]


def test_bad_inputs(lm):
    with pytest.raises(ConfigError, match="neither"):
        EmotionReasoner(lm).predict()
    with pytest.raises(ConfigError, match="mode"):
        EmotionReasoner(lm, mode="vote")
    with pytest.raises(ConfigError, match="accepted: .*acoustic"):
        EmotionReasoner(lm, strategy="fancy")
    with pytest.raises(ConfigError, match="context turn"):
        EmotionReasoner(lm, mode="score").predict(transcript="x", context=["just text"])


@pytest.mark.parametrize("strategy", ["minimal", "cot", "acoustic"])
def test_calibration_makes_the_content_free_input_uniform(lm, strategy):
    # contextual calibration (Zhao et al., 2021) is defined by this: the content-free input itself, transcript
    # "N/A" (and description "N/A" where the strategy describes the voice), gets equal probabilities
    def content_free_probs(reasoner):
        description = "N/A" if reasoner.prosody else None
        pred = reasoner.predict_batch([{"transcript": "N/A"}], prosody=[description])[0]
        return list(pred.distribution.values())

    calibrated = EmotionReasoner(lm, labels="ravdess8", strategy=strategy, mode="score", calibrate=True)
    plain = EmotionReasoner(lm, labels="ravdess8", strategy=strategy, mode="score")
    assert calibrated.prosody is (strategy == "acoustic")
    assert max(content_free_probs(calibrated)) - min(content_free_probs(calibrated)) < 1e-5
    assert max(content_free_probs(plain)) - min(content_free_probs(plain)) > 1e-3  # the bias removed above


def test_calibration_moves_every_input_s_log_odds_by_the_same_amount(lm):
    # each label's probability is divided by a constant of its own, so for any two labels the log-odds of
    # every input move by one amount and the inputs, ordered by those log-odds, keep their order (what can
    # change is the ranking of the labels within an input: that is the prior bias being removed)
    items = [{"transcript": t} for t in ["What a day.", "Leave me alone!", "I won", "Fine.", "Why?"]]

    def log_probs(calibrate):
        reasoner = EmotionReasoner(
            lm, labels="iemocap4", strategy="minimal", mode="score", calibrate=calibrate
        )
        return torch.tensor([list(p.distribution.values()) for p in reasoner.predict_batch(items)]).log()

    plain, calibrated = log_probs(False), log_probs(True)
    for a, b in itertools.combinations(range(plain.shape[1]), 2):
        before, after = plain[:, a] - plain[:, b], calibrated[:, a] - calibrated[:, b]
        assert torch.allclose(after - before, (after - before)[0].expand(len(items)), atol=1e-4)
        assert before.argsort().tolist() == after.argsort().tolist()


def test_a_reasoner_keeps_the_template_it_was_built_with(lm, tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text("Which of {{ labels | join(', ') }}? {{ transcript }}")
    reasoner = EmotionReasoner(lm, labels=["happy", "sad"], strategy=str(template), mode="score")
    before = (reasoner.build_prompt("hi"), reasoner.settings()["template_sha256"])
    template.write_text("Pick one of {{ labels | join(', ') }}: {{ transcript }}")  # edited mid-run
    assert (reasoner.build_prompt("hi"), reasoner.settings()["template_sha256"]) == before
    fresh = EmotionReasoner(lm, labels=["happy", "sad"], strategy=str(template), mode="score")
    assert "Pick one of happy, sad: hi" in fresh.build_prompt("hi")
    assert fresh.settings()["template_sha256"] != before[1]


# -- malformed input and settings: a clear error, or a documented graceful result ----------------------------


def test_bad_settings_and_values_are_config_errors(lm):
    for value in (123, float("nan")):
        with pytest.raises(ConfigError, match="transcript must be a string or None"):
            EmotionReasoner(lm, mode="score").predict(transcript=value)
    with pytest.raises(ConfigError, match="max_new_tokens must be an integer >= 1"):
        EmotionReasoner(lm, max_new_tokens=0)  # it used to mean the default, 128
    with pytest.raises(ConfigError, match="temperature must be a number > 0 when do_sample=True"):
        EmotionReasoner(lm, mode="generate", do_sample=True, temperature=0)
    with pytest.raises(ConfigError, match="temperature must be a number > 0"):
        lm.generate(["hi"], max_new_tokens=2, do_sample=True, temperature=0.0)
    for option in ("calibrate", "length_normalize"):
        with pytest.raises(ConfigError, match=f"{option} changes the label distribution"):
            EmotionReasoner(lm, mode="generate", **{option: True})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ transcript }\n", r"mine.jinja, line 1: unexpected '}'"),
        (
            "{{ transcript }}{% if prosody %} {{ voice }}{% endif %}",
            "'voice' is undefined; a template receives",
        ),
    ],
)
def test_a_broken_template_fails_when_the_reasoner_is_built(lm, tmp_path, template, message):
    path = tmp_path / "mine.jinja"
    path.write_text(template)
    with pytest.raises(ConfigError, match=message):
        EmotionReasoner(lm, strategy=str(path), mode="score")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_fails_before_the_model_loads(tmp_path):
    with pytest.raises(ConfigError, match="device is 'cuda', but"):
        EmotionReasoner.from_pretrained(str(tmp_path / "not-even-a-model"), device="cuda")


def test_a_long_context_loses_its_oldest_turns_and_says_so(lm, caplog):
    # the tiny model reads 512 positions; each byte is a token
    turns = [(f"S{i}", f"turn {i} " + "x" * 120) for i in range(6)]
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="minimal", mode="both", max_new_tokens=4)
    pred = reasoner.predict(transcript="Leave me alone.", context=turns)
    note = next(n for n in pred.notes if n.startswith("context cut to the last "))
    kept = int(note.split("last ")[1].split(" of")[0])
    assert 0 < kept < 6 and "of 6 turns" in note and "over the model's 512 positions" in note
    assert '"Leave me alone."' in pred.prompt and "turn 5 " in pred.prompt and "turn 0 " not in pred.prompt
    assert lm.prompt_length(pred.prompt) + 4 <= 512
    assert (
        "context cut" in caplog.text and "Leave me alone." in caplog.text
    )  # the warning names the utterance
    short = reasoner.predict(transcript="Leave me alone.", context=turns[-1:])
    assert not any("context" in n for n in short.notes)  # what fits is left alone


def test_an_utterance_longer_than_the_model_is_kept_and_flagged(lm):
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="minimal", mode="score")
    pred = reasoner.predict(transcript="word " * 200, context=[("A", "hi")])
    assert pred.label is not None
    assert any(
        "all 1 context turns left out, and still the prompt is" in n and "unreliable" in n for n in pred.notes
    )


def test_one_unreadable_file_does_not_fail_the_batch(lm, speech, tmp_path):
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="acoustic", mode="score")
    missing = tmp_path / "missing.wav"
    good, bad, lost = reasoner.predict_batch(
        [
            {"audio": speech, "transcript": "Kids are talking by the door"},
            {"audio": missing, "transcript": "Kids are talking"},
            {"audio": missing},
        ]
    )
    assert good.label is not None and good.prosody
    assert bad.label is not None and bad.prosody is None  # predicted from its words, as the harness does
    assert (
        bad.notes[0].startswith("prosody failed: AudioError: audio file") and "does not exist" in bad.notes[0]
    )
    assert lost.label is None and lost.distribution is None
    assert lost.notes[-1] == "not predicted: no transcript, and the audio could not be measured"
    with pytest.raises(AudioError, match="does not exist"):
        reasoner.predict(audio=missing, transcript="Kids are talking")  # one utterance: the error itself


def test_a_non_english_transcript_falls_back_to_nuclei(lm, speech):
    reasoner = EmotionReasoner(lm, labels="iemocap4", strategy="acoustic", mode="score")
    pred = reasoner.predict(audio=speech, transcript="子供たちがドアのそばで話している")
    assert pred.prosody and pred.notes[0].startswith("the transcript has no English words to align")
    assert "子供たち" in pred.prompt
    # blank is no transcript, not an error (and with asr="none", nothing is recognised in its place)
    blank = reasoner.predict(audio=speech, transcript="  ", asr="none")
    assert blank.prosody and "no transcript: the prompt says it is unknown" in blank.notes


def test_generate_mode_drops_a_checkpoints_score_settings(tmp_path, tiny_model, tiny_tokenizer):
    from emollm.modeling import base
    from emollm.modeling.checkpoint import save_checkpoint

    folder = base.save_to_cache(tiny_model, tiny_tokenizer, tmp_path / "tiny")
    reasoner = {"labels": "iemocap4", "strategy": "minimal", "mode": "score", "calibrate": True}
    checkpoint = save_checkpoint(
        tiny_model, tmp_path / "ckpt", base_model=str(folder), reasoner=reasoner, save_lora=False
    )
    assert EmotionReasoner.from_pretrained(str(checkpoint)).calibrate is True
    generating = EmotionReasoner.from_pretrained(str(checkpoint), mode="generate", max_new_tokens=2)
    assert generating.calibrate is False
    with pytest.raises(ConfigError, match="calibrate changes"):
        EmotionReasoner.from_pretrained(str(checkpoint), mode="generate", calibrate=True)
