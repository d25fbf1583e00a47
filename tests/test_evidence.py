"""Evidence rationales (emollm.training.evidence): every claim verifies, the same data gives the same model and
the same words (in another process too), the saved model reproduces them, and the cue reward pays them in full.

Ground truth is Praat-synthesised speech: three voices speak two sentences in four acted styles (pitch,
rate and pitch range set per label), so each label has cues a speaker-normalised model can find.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from emollm.errors import DataError
from emollm.prosody.describe import describe
from emollm.prosody.features import ProsodyFeatures
from emollm.prosody.normalize import ProsodyNormalizer, normalize_features
from emollm.reasoning import TRUE, extract_claims, verify_rationale
from emollm.training.evidence import (
    EVIDENCE_NAME,
    FEATURES,
    LABEL_AFFECT,
    MAX_CUES,
    EvidenceModel,
    arousal_direction,
    compose,
    prosody_record,
    read_prosody_record,
)
from emollm.training.rewards import cue_reward

# label -> (Praat pitch multiplier, words per minute, pitch range multiplier)
STYLES = {
    "angry": (1.4, 260, 1.6),
    "sad": (0.75, 120, 0.5),
    "happy": (1.6, 220, 1.8),
    "neutral": (1.0, 175, 1.0),
}
TEXTS = ("Kids are talking by the door", "Dogs are sitting by the door")
VOICES = ("Male1", "Female1", "Male2")


def fit(features, labels):
    """The normaliser and evidence model, fit as the recipe fits them (on the training utterances only)."""
    norm = ProsodyNormalizer(min_vowels_per_speaker=10, min_utterances_per_speaker=3).fit(features)
    return norm, EvidenceModel.fit(features, labels, norm)


@pytest.fixture(scope="module")
def corpus():
    from emollm.prosody.measure import measure
    from emollm.prosody.synth import synthesize

    features, labels = [], []
    for voice in VOICES:
        for label, (pitch, rate, spread) in STYLES.items():
            for k, text in enumerate(TEXTS):
                audio, alignment = synthesize(
                    text, pitch=pitch * (1 + 0.05 * k), words_per_minute=rate + 10 * k, pitch_range=spread,
                    voice=voice,
                )  # fmt: skip
                features.append(measure(audio, alignment, speaker=voice))
                labels.append(label)
    norm, model = fit(features, labels)
    rationales = [model.rationale(f, label) for f, label in zip(features, labels)]
    return SimpleNamespace(features=features, labels=labels, norm=norm, model=model, rationales=rationales)


def test_every_claim_verifies_and_each_cue_is_one_true_claim(corpus):
    for feats, label, text in zip(corpus.features, corpus.labels, corpus.rationales):
        normalized = corpus.norm.transform(feats)
        cues = corpus.model.cues(feats, normalized, label)
        assert 2 <= len(cues) <= MAX_CUES, text  # every label has at least two cues in this corpus
        check = verify_rationale(text, feats, normalized)
        assert check.precision == 1.0 and check.n_unverifiable == 0, (text, check.to_dict())
        assert check.n_true == len({c.key for c in extract_claims(text)}) == len(cues), text
        assert text.endswith(f"which fits {label}, a {LABEL_AFFECT[label][1]} emotion.") or label == "neutral"


def test_cues_support_the_gold_label_and_agree_with_its_arousal(corpus):
    for feats, label in zip(corpus.features, corpus.labels):
        cues = corpus.model.cues(feats, corpus.norm.transform(feats), label)
        assert all(c.contribution > 0 and abs(c.z) > 0.5 for c in cues)
        assert [c.contribution for c in cues] == sorted((c.contribution for c in cues), reverse=True)
        directions = {arousal_direction(c.quantity, "high" if c.z > 0 else "low") for c in cues} - {None}
        assert directions <= {LABEL_AFFECT[label][0]}, (label, cues)
    reading = dict(zip(corpus.labels, corpus.rationales))
    assert "high arousal, which fits angry" in reading["angry"]
    assert "low arousal, which fits sad" in reading["sad"]


def key(claim):
    return (claim.quantity, claim.level, claim.degree, claim.word, claim.vowel)


def test_a_prompt_with_a_description_gets_only_the_cues_it_states_in_its_words(corpus):
    """The text route: a rationale names no cue the model was not shown, at the description's degree."""
    with_a_vowel = 0
    for feats, label in zip(corpus.features, corpus.labels):
        normalized = corpus.norm.transform(feats)
        for shown in (describe(feats, normalized), describe(feats, normalized, max_vowels=0)):
            text = corpus.model.rationale(feats, label, shown=shown)
            named = {key(c) for c in extract_claims(text)}
            assert named <= {key(c) for c in extract_claims(shown)}, (text, shown)
            check = verify_rationale(text, feats, normalized)
            assert check.n_false == check.n_unverifiable == 0, text
        text = corpus.model.rationale(feats, label, shown=describe(feats, normalized))
        with_a_vowel += any(c.scope == "vowel" for c in extract_claims(text))
        without_vowels = corpus.model.rationale(feats, label, shown=describe(feats, normalized, max_vowels=0))
        assert all(c.scope == "utterance" for c in extract_claims(without_vowels)), without_vowels
        assert corpus.model.rationale(feats, label, shown="").startswith("No measured cue stands out")
    assert with_a_vowel > 0  # a described vowel can be named


def test_without_a_description_only_utterance_cues_are_named(corpus):
    """The tokens route: the model is not told which word a vowel is in, so no vowel is named."""
    for text in corpus.rationales:
        assert all(c.scope == "utterance" for c in extract_claims(text)), text


def test_the_same_data_gives_the_same_model_and_words_in_another_process(corpus, tmp_path):
    again = fit(corpus.features, corpus.labels)[1]
    assert again.to_json() == corpus.model.to_json()
    assert [
        again.rationale(f, label) for f, label in zip(corpus.features, corpus.labels)
    ] == corpus.rationales

    data = tmp_path / "train.json"
    data.write_text(
        json.dumps([[json.loads(f.to_json()), y] for f, y in zip(corpus.features, corpus.labels)])
    )
    script = f"""
import json, sys
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
from test_evidence import fit
from emollm.prosody.features import ProsodyFeatures
rows = json.loads(open({str(data)!r}).read())
features = [ProsodyFeatures.from_dict(f) for f, _ in rows]
labels = [y for _, y in rows]
model = fit(features, labels)[1]
print(json.dumps([model.to_json(), [model.rationale(f, y) for f, y in zip(features, labels)]]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    saved, rationales = json.loads(done.stdout.strip().splitlines()[-1])
    assert saved == corpus.model.to_json() and rationales == corpus.rationales


def test_the_saved_model_reproduces_every_rationale(corpus, tmp_path):
    corpus.model.save(tmp_path / EVIDENCE_NAME)
    loaded = EvidenceModel.load(tmp_path)  # a checkpoint folder: its emollm_evidence.json
    assert loaded.to_json() == corpus.model.to_json()
    for feats, label, text in zip(corpus.features, corpus.labels, corpus.rationales):
        again = ProsodyFeatures.from_dict(json.loads(feats.to_json()))  # as read from the prosody cache
        assert loaded.rationale(again, label, feats.speaker) == text
    saved = json.loads((tmp_path / EVIDENCE_NAME).read_text())
    assert saved["features"] == list(FEATURES) and saved["classes"] == sorted(STYLES)
    assert saved["record"]["label_counts"] == {label: 6 for label in sorted(STYLES)}
    assert saved["normalizer"] == corpus.norm.to_dict()  # the z-scores come with the model


def test_rationales_are_bounded(corpus):
    for text in corpus.rationales:
        cue_part = text.split(". ")[0]
        assert cue_part.count(";") <= MAX_CUES - 1 and len(text.split()) <= 60, text


def test_an_evidence_completion_earns_the_whole_cue_reward(corpus):
    """The SFT target is what GRPO's cue reward pays in full: own words, true, agreeing with the answer."""
    for feats, label, text in zip(corpus.features, corpus.labels, corpus.rationales):
        normalized = corpus.norm.transform(feats)
        record = prosody_record(feats, normalized, describe(feats, normalized))
        completion = f"<think>{text}</think><answer>{label}</answer>"
        assert cue_reward([completion], prosody=[record], label_set="ravdess8") == [1.0], text


def test_without_features_or_cues_nothing_is_claimed(corpus):
    assert corpus.model.rationale(None, "sad") == "No measured cue is available. The best fit is sad."
    unknown = corpus.model.rationale(corpus.features[0], "calm")  # not a training label: no weights
    assert unknown == "No measured cue stands out for this speaker. The best fit is calm."
    for text in (unknown, compose([], "angry")):
        assert extract_claims(text) == []


def test_fitting_needs_two_measured_labels(corpus):
    with pytest.raises(DataError, match="at least two labels"):
        EvidenceModel.fit(corpus.features[:2], ["sad", "sad"], corpus.norm)
    with pytest.raises(DataError, match="at least two labels"):
        EvidenceModel.fit([None, None], ["sad", "happy"], corpus.norm)


def test_a_prosody_record_rebuilds_what_verify_reads(corpus):
    feats = corpus.features[0]
    normalized = normalize_features(feats, corpus.norm)
    back, normalized_back, description = read_prosody_record(prosody_record(feats, normalized, "Loud."))
    assert description == "Loud." and back.alignment is None
    text = corpus.rationales[0] + " " + describe(feats, normalized)
    assert (
        verify_rationale(text, back, normalized_back).to_dict()
        == verify_rationale(text, feats, normalized).to_dict()
    )
    assert all(v.verdict == TRUE for v in verify_rationale(text, back, normalized_back).verdicts)


def test_a_file_that_is_no_evidence_model_is_refused(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="not an evidence model"):
        EvidenceModel.load(tmp_path / "x.json")
    with pytest.raises(DataError, match="cannot read"):
        EvidenceModel.load(tmp_path / "missing.json")
