"""The pipeline end to end: extract, describe, batch with cache and resume, the CLI, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emollm.cli import main
from emollm.io import atomic_path, write_text_atomic
from emollm.prosody import describe_prosody, extract_many, extract_prosody
from emollm.prosody.normalize import ProsodyNormalizer
from emollm.prosody.pipeline import prosody_cache_key
from emollm.prosody.synth import synthesize

KIDS = "Kids are talking by the door"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four synthesised clips on disk: two voices x two sentences."""
    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for voice in ("Male1", "Female1"):
        for text in (KIDS, "Dogs are sitting by the door"):
            audio, _ = synthesize(text, voice=voice)
            path = folder / f"{voice}-{text.split()[0]}.wav"
            sf.write(path, audio.samples, audio.sample_rate)
            rows.append({"audio": str(path), "transcript": text, "speaker": voice})
    return rows


def test_extract_and_describe_one_file(clips):
    row = clips[0]
    features = extract_prosody(row["audio"], row["transcript"], speaker="Male1")
    assert features.speaker == "Male1"
    assert features.alignment.method == "pocketsphinx"
    assert [v.word for v in features.vowels] == ["kids", "are", "talking", "talking", "by", "the", "door"]
    text = describe_prosody(features)
    assert text == describe_prosody(row["audio"], row["transcript"])  # same file, same words
    assert describe_prosody(features, style="none") == ""


def test_describe_with_a_saved_normalizer_uses_the_speaker(clips, tmp_path):
    features = [extract_prosody(r["audio"], r["transcript"], speaker=r["speaker"]) for r in clips]
    normalizer = ProsodyNormalizer(
        min_vowels_per_speaker=5, min_utterances_per_speaker=2, min_vowels_per_class=2
    )
    normalizer.fit(features)
    normalizer.save(tmp_path / "stats.json")
    with_speaker = describe_prosody(features[0], normalizer=tmp_path / "stats.json")
    unknown = describe_prosody(features[0], speaker="someone else", normalizer=tmp_path / "stats.json")
    assert "this speaker" in with_speaker
    assert "this speaker" not in unknown


def test_extract_many_caches_and_resumes(clips, tmp_path):
    cache = tmp_path / "cache"
    first = extract_many(clips[:2], cache_dir=cache, progress=False)
    assert first.cached == 0 and not first.errors
    assert len(list(cache.rglob("*.json"))) == 2
    # An interrupted run: two done, the rest not. The re-run reads two back and computes two.
    second = extract_many(clips, cache_dir=cache, progress=False)
    assert second.cached == 2 and not second.errors
    assert [f.to_json() for f in second.features[:2]] == [f.to_json() for f in first.features]
    assert len(list(cache.rglob("*.json"))) == 4
    third = extract_many(clips, cache_dir=cache, progress=False)
    assert third.cached == 4
    assert [f.to_json() for f in third.features] == [f.to_json() for f in second.features]
    assert not list(cache.rglob("*.tmp*"))  # only finished files


def test_extract_many_expands_a_home_cache_dir(clips, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    extract_many(clips[:1], cache_dir="~/prosody", progress=False)
    assert len(list((tmp_path / "home" / "prosody").rglob("*.json"))) == 1
    assert not (tmp_path / "~").exists()  # no literal "~" folder in the working directory


def test_cache_key_follows_content_and_settings(clips, tmp_path):
    from emollm.prosody.measure import MeasureConfig

    row = dict(clips[0])
    key = prosody_cache_key(row, MeasureConfig())
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(Path(row["audio"]).read_bytes())
    assert prosody_cache_key({**row, "audio": str(copy)}, MeasureConfig()) == key  # content, not name
    assert prosody_cache_key(row, MeasureConfig(pitch_floor=60)) != key
    assert prosody_cache_key({**row, "transcript": "kids"}, MeasureConfig()) != key


def test_a_bad_item_does_not_stop_the_batch(clips, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    items = [clips[0], {"audio": str(silent), "transcript": KIDS}, {"audio": str(tmp_path / "missing.wav")}]
    result = extract_many(items, cache_dir=tmp_path / "cache", progress=False)
    assert result.features[0] is not None
    assert result.features[1] is None and "silent" in result.errors[1]
    assert result.features[2] is None and "does not exist" in result.errors[2]


def test_two_workers_give_the_same_features(clips):
    serial = extract_many(clips, progress=False)
    parallel = extract_many(clips, workers=2, progress=False)
    assert [f.to_json() for f in parallel.features] == [f.to_json() for f in serial.features]


def test_cli_prosody(clips, tmp_path, capsys):
    row = clips[0]
    assert (
        main(["prosody", row["audio"], "--transcript", KIDS, "--plot", str(tmp_path / "p.png"), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["features"]["alignment"]["method"] == "pocketsphinx"
    assert out["description"] and out["reference"] == "utterance"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["prosody", row["audio"], "--style", "utterance"]) == 0
    text = capsys.readouterr().out
    assert "nuclei" in text and "no transcript" in text
    assert main(["prosody", str(tmp_path / "nope.wav")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_atomic_writes_leave_the_old_file_on_error(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert (
        path.stat().st_mode & 0o044
    )  # readable by others, like any file the user writes (not mkstemp's 0600)
