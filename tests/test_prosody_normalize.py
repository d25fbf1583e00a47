"""ProsodyNormalizer: speaker/corpus/utterance references, NaN-safe statistics, JSON round trip, no leakage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emollm.errors import ConfigError, DataError
from emollm.prosody.normalize import (
    DEFAULT_CUTS,
    UTTERANCE_QUANTITIES,
    VOWEL_QUANTITIES,
    NormalizedProsody,
    ProsodyNormalizer,
    utterance_relative,
)

NAN = float("nan")


def make_vowel(
    phone="AA",
    *,
    stress=1,
    word="word",
    start=0.0,
    duration=0.1,
    f0=10.0,
    movement=2.0,
    slope=0.0,
    intensity=70.0,
):
    from emollm.prosody.features import VowelMeasures

    hz = 100 * 2 ** (f0 / 12)
    return VowelMeasures(
        phone=phone,
        stress=stress,
        word=word,
        word_index=0 if word else None,
        start=start,
        end=start + duration,
        duration=duration,
        f0_mean_hz=hz,
        f0_min_hz=hz,
        f0_max_hz=hz,
        f0_slope_hz=NAN,
        f0_mean_st=f0,
        f0_min_st=f0 - movement / 2,
        f0_max_st=f0 + movement / 2,
        f0_slope_st=slope,
        intensity_mean_db=intensity,
        intensity_max_db=intensity + 3,
        voiced_fraction=0.0 if math.isnan(f0) else 1.0,
    )


def make_features(vowels, *, speaker=None, method="textgrid", **utterance):
    from emollm.prosody.alignment import Alignment
    from emollm.prosody.features import ProsodyFeatures, UtteranceMeasures

    f0 = np.array([v.f0_mean_st for v in vowels], dtype=float)
    f0 = f0[np.isfinite(f0)]
    values = dict(
        duration=2.0,
        speech_duration=1.6,
        n_vowels=len(vowels),
        f0_mean_hz=120.0,
        f0_std_hz=10.0,
        f0_min_hz=90.0,
        f0_max_hz=150.0,
        f0_mean_st=float(f0.mean()) if f0.size else NAN,
        f0_std_st=float(f0.std()) if f0.size else NAN,
        f0_range_st=6.0,
        intensity_mean_db=70.0,
        intensity_max_db=80.0,
        intensity_range_db=20.0,
        speech_rate=len(vowels) / 2.0,
        articulation_rate=len(vowels) / 1.6,
        pause_count=1,
        pause_ratio=0.1,
        jitter_local=0.01,
        shimmer_local=0.05,
        hnr_db=15.0,
        pitch_floor=75.0,
        pitch_ceiling=300.0,
    )
    values.update(utterance)
    alignment = Alignment(method=method, duration=values["duration"])
    return ProsodyFeatures(
        utterance=UtteranceMeasures(**values), vowels=list(vowels), alignment=alignment, speaker=speaker
    )


def random_utterance(rng, speaker, base_f0, *, n_vowels=8, gain=0.0):
    phones = [("AA", 1, 0.16), ("IH", 0, 0.06), ("AO", 1, 0.14), ("AH", 0, 0.05)]
    vowels = []
    for i in range(n_vowels):
        phone, stress, duration = phones[i % len(phones)]
        vowels.append(
            make_vowel(
                phone,
                stress=stress,
                word=f"w{i}",
                start=0.2 * i,
                duration=duration * float(np.exp(rng.normal(0, 0.2))),
                f0=base_f0 + rng.normal(0, 2),
                movement=abs(rng.normal(2, 1)),
                slope=rng.normal(-5, 5),
                intensity=70 + gain + rng.normal(0, 3),
            )
        )
    return make_features(
        vowels,
        speaker=speaker,
        articulation_rate=float(rng.normal(4.5, 0.5)),
        intensity_mean_db=70 + gain + float(rng.normal(0, 2)),
        jitter_local=float(rng.uniform(0.005, 0.02)),
    )


def corpus(seed=0, speakers=(("low", 5.0), ("high", 17.0)), n=6):
    rng = np.random.default_rng(seed)
    return [random_utterance(rng, name, f0) for name, f0 in speakers for _ in range(n)]


def fitted(train, **kwargs):
    kwargs = {
        "min_vowels_per_speaker": 20,
        "min_utterances_per_speaker": 3,
        "min_vowels_per_class": 5,
        **kwargs,
    }
    return ProsodyNormalizer(**kwargs).fit(train)


def test_speaker_reference_removes_the_speakers_own_level():
    train = corpus()
    norm = fitted(train)
    assert norm.speakers == ["high", "low"]
    typical_high = random_utterance(np.random.default_rng(99), "high", 17.0)
    own = norm.transform(typical_high)
    assert own.reference == own.vowel_reference == "speaker"
    assert abs(own.utterance["f0_mean_st"]) < 1.5  # ordinary for this speaker ...
    as_unknown = norm.transform(typical_high, speaker="someone else")
    assert as_unknown.reference == "corpus" and as_unknown.vowel_reference == "utterance"
    assert as_unknown.utterance["f0_mean_st"] > 0.8  # ... but high for the corpus
    assert as_unknown.utterance_bins["f0_mean_st"] == "high"
    assert as_unknown.vowels == utterance_relative(typical_high).vowels  # vowels relative to the utterance


def test_explicit_speakers_override_features_speaker():
    train = corpus()
    norm = fitted(train, min_vowels_per_speaker=1, min_utterances_per_speaker=1)
    renamed = fitted(train, min_vowels_per_speaker=1, min_utterances_per_speaker=1)
    renamed.fit(train, speakers=[f"spk{i % 3}" for i in range(len(train))])
    assert norm.speakers == ["high", "low"] and renamed.speakers == ["spk0", "spk1", "spk2"]
    with pytest.raises(ConfigError, match="speakers"):
        norm.fit(train, speakers=["a"])


def test_speaker_with_too_little_data_falls_back_to_the_corpus():
    train = corpus()
    rng = np.random.default_rng(5)
    train.append(random_utterance(rng, "rare", 11.0))  # one utterance: below min_utterances_per_speaker
    norm = fitted(train)
    assert "rare" not in norm.speakers
    out = norm.transform(random_utterance(rng, "rare", 11.0))
    assert out.reference == "corpus" and out.speaker == "rare"


def test_no_leakage_between_splits():
    split_a = corpus(seed=1)
    rng = np.random.default_rng(2)
    split_b = [random_utterance(rng, "low", 5.0) for _ in range(4)] + [
        random_utterance(rng, "new", 9.0) for _ in range(4)
    ]
    norm = fitted(split_a)
    state = json.dumps(norm.to_dict(), sort_keys=True)
    first = norm.transform(split_b[0]).to_dict()
    for item in split_b[1:]:  # transforming (more) B items never changes what A taught it
        norm.transform(item)
    extra = random_utterance(rng, "low", 30.0)
    norm.transform(extra)
    assert norm.transform(split_b[0]).to_dict() == first
    assert json.dumps(norm.to_dict(), sort_keys=True) == state
    assert norm.transform(split_b[-1]).reference == "corpus"  # a speaker only in B is unknown
    # the same check can fail: refitting with B included changes the outputs
    leaky = fitted(split_a + split_b)
    assert leaky.transform(split_b[0]).to_dict() != first
    assert leaky.transform(split_b[-1]).reference == "speaker"


def test_duration_is_normalised_per_vowel_class_when_there_is_enough_data():
    train = corpus()
    long_aa = make_features(
        [make_vowel("AA", stress=1, duration=0.16, start=0.2 * i) for i in range(4)]
        + [make_vowel("IH", stress=0, duration=0.06, start=1 + 0.2 * i) for i in range(4)],
        speaker="low",
    )
    by_class = fitted(train).transform(long_aa)
    pooled = fitted(train, min_vowels_per_class=1000).transform(long_aa)
    aa_z = by_class.vowels[0]["log_duration"]
    assert abs(aa_z) < 1.0 and by_class.vowels[0] == by_class.vowels[1]  # a typical AA1 is typical ...
    assert pooled.vowels[0]["log_duration"] > 1.0  # ... but long among all of the speaker's vowels
    assert pooled.vowels[4]["log_duration"] < -0.5


def test_recording_gain_moves_only_the_corpus_loudness():
    norm = fitted(corpus())
    rng = np.random.default_rng(3)
    quiet = random_utterance(rng, "low", 5.0)
    rng = np.random.default_rng(3)
    loud = random_utterance(rng, "low", 5.0, gain=20.0)
    a, b = norm.transform(quiet), norm.transform(loud)
    for za, zb in zip(a.vowels, b.vowels):
        assert za["intensity_rel_db"] == pytest.approx(zb["intensity_rel_db"])
    assert b.utterance["intensity_mean_db"] > a.utterance["intensity_mean_db"] + 3
    assert b.utterance_bins["intensity_mean_db"] == "high"
    unknown = norm.transform(loud, speaker="nobody")
    assert unknown.utterance["intensity_mean_db"] == pytest.approx(
        b.utterance["intensity_mean_db"]
    )  # corpus only


def test_nan_stays_nan_and_never_poisons_statistics():
    train = corpus()
    vowels = [make_vowel(start=0.2 * i, f0=NAN if i == 2 else 5.0 + i) for i in range(6)]
    train.append(make_features(vowels, speaker="low", jitter_local=NAN, hnr_db=NAN))
    norm = fitted(train)
    assert all(math.isfinite(norm.corpus[q]["mean"]) for q in UTTERANCE_QUANTITIES)
    assert all(math.isfinite(s["mean"]) for s in norm.speaker_stats["low"]["vowel"].values())
    out = norm.transform(make_features(vowels, speaker="low", jitter_local=NAN))
    assert math.isnan(out.vowels[2]["f0_mean_st"]) and "f0_mean_st" not in out.vowel_bins[2]
    assert math.isfinite(out.vowels[2]["log_duration"]) and "log_duration" in out.vowel_bins[2]
    assert math.isnan(out.utterance["jitter_local"]) and "jitter_local" not in out.utterance_bins
    # utterance-relative: the unvoiced vowel does not move the others' pitch z-scores
    rel = utterance_relative(make_features(vowels))
    others = [5.0 + i for i in range(6) if i != 2]
    expected = (np.array(others) - np.mean(others)) / np.std(others)
    assert [rel.vowels[i]["f0_mean_st"] for i in (0, 1, 3, 4, 5)] == pytest.approx(list(expected))


def test_bins_are_training_tertiles():
    train = corpus(n=10)
    norm = fitted(train)
    cuts = norm.cuts["speaker"]["vowel"]["f0_mean_st"]
    assert cuts != list(DEFAULT_CUTS) and cuts[0] < 0 < cuts[1]
    bins = [b["f0_mean_st"] for item in train for b in norm.transform(item).vowel_bins]
    shares = {name: bins.count(name) / len(bins) for name in ("low", "mid", "high")}
    assert all(0.28 < share < 0.39 for share in shares.values()), shares


def test_save_and_load_round_trip(tmp_path):
    train = corpus()
    train.append(make_features([make_vowel(start=0.2 * i, f0=NAN) for i in range(3)], speaker="low"))
    norm = fitted(train)
    path = norm.save(tmp_path / "stats" / "prosody.json")
    assert [p.name for p in path.parent.iterdir()] == ["prosody.json"]  # no temporary file left
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert data["version"] == 1 and data["cuts"]["corpus"]["utterance"]
    loaded = ProsodyNormalizer.load(path)
    assert loaded.speakers == norm.speakers
    item = random_utterance(np.random.default_rng(7), "high", 17.0)
    assert loaded.transform(item).to_dict() == norm.transform(item).to_dict()
    assert loaded.transform(item, speaker="x").to_dict() == norm.transform(item, speaker="x").to_dict()


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ProsodyNormalizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        ProsodyNormalizer.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataError, match="not a prosody normaliser"):
        ProsodyNormalizer.load(tmp_path / "other.json")
    data = fitted(corpus()).to_dict()
    (tmp_path / "future.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(DataError, match="version 99"):
        ProsodyNormalizer.load(tmp_path / "future.json")
    del data["cuts"]["speaker"]
    (tmp_path / "broken.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="malformed"):
        ProsodyNormalizer.load(tmp_path / "broken.json")


def test_misuse_raises_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not fitted"):
        ProsodyNormalizer().transform(corpus()[0])
    with pytest.raises(ConfigError, match="unfitted"):
        ProsodyNormalizer().save(tmp_path / "x.json")
    with pytest.raises(DataError, match="at least one"):
        ProsodyNormalizer().fit([])
    with pytest.raises(ConfigError, match="min_vowels_per_speaker"):
        ProsodyNormalizer(min_vowels_per_speaker=0)


def test_utterance_relative_needs_no_statistics():
    vowels = [make_vowel(start=0.2 * i, duration=0.4 if i == 3 else 0.1) for i in range(6)]
    out = utterance_relative(make_features(vowels, speaker="anyone"))
    assert out.reference == "utterance" and out.utterance_bins == {}
    assert all(math.isnan(z) for z in out.utterance.values())
    assert out.utterance_raw["articulation_rate"] == pytest.approx(6 / 1.6)
    assert out.vowel_bins[3]["log_duration"] == "high" and out.vowel_bins[0]["log_duration"] == "low"
    monotone = utterance_relative(
        make_features([make_vowel(start=0.2 * i, f0=10 + 0.05 * i) for i in range(6)])
    )
    assert all(
        abs(row["f0_mean_st"]) < 0.2 for row in monotone.vowels
    )  # inaudible steps stay small (STD_FLOORS)
    assert {b["f0_mean_st"] for b in monotone.vowel_bins} == {"mid"}
    two = utterance_relative(make_features(vowels[:2]))  # too few vowels for a z-score
    assert all(math.isnan(z) for row in two.vowels for z in row.values()) and two.vowel_bins == [{}, {}]


def test_flat_has_a_fixed_set_of_keys():
    norm = fitted(corpus())
    full = norm.transform(corpus()[0]).flat()
    empty = NormalizedProsody("utterance").flat()
    assert list(full) == list(empty)
    assert len(full) == len(UTTERANCE_QUANTITIES) + 3 * len(VOWEL_QUANTITIES)
    assert all(k.startswith(("z_utt_", "z_vowel_")) for k in full)
    assert math.isfinite(full["z_vowel_log_duration_max"]) and math.isnan(empty["z_vowel_log_duration_max"])
    assert full["z_vowel_f0_mean_st_min"] <= full["z_vowel_f0_mean_st_mean"] <= full["z_vowel_f0_mean_st_max"]
