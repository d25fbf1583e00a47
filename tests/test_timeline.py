"""Long recordings: voice activity, the per-segment timeline, resuming, malformed inputs and Praat TextGrids.

The recording is Praat-synthesised sentences between silences of known length (one silence holds low noise),
written at 22.05 kHz in stereo, so the streaming reader mixes and resamples; the synthesiser's own word
intervals are the ground truth of where the speech is.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
import types

import numpy as np
import pytest
import soundfile as sf

from emollm import vad
from emollm.api import EmotionReasoner
from emollm.cli import main
from emollm.errors import AudioError, ConfigError
from emollm.modeling import EmotionLM
from emollm.prosody.synth import synthesize
from emollm.timeline import find_speech, run_timeline

SR = 22050
SENTENCES = [
    ("Kids are talking by the door", 1.0, 175),
    ("I can't believe you did this to me", 1.5, 210),
    ("It is over now", 0.8, 130),
    ("Please leave me alone", 1.2, 190),
]
GAPS = [1.0, 0.8, 1.5, 1.0, 1.2]  # before, between and after the sentences, seconds
NOISY_GAP = 2  # this gap holds white noise at about -50 dBFS


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A stereo 22.05 kHz WAV of four sentences, and each sentence's (start, end) from the synthesiser."""
    rng = np.random.default_rng(0)
    parts, truth, position = [], [], 0
    for i, gap in enumerate(GAPS):
        silence = np.zeros(int(gap * SR), dtype=np.float32)
        if i == NOISY_GAP:
            silence = rng.normal(0, 0.003, len(silence)).astype(np.float32)
        parts.append(silence)
        position += len(silence)
        if i < len(SENTENCES):
            text, pitch, rate = SENTENCES[i]
            audio, alignment = synthesize(text, pitch=pitch, words_per_minute=rate, sample_rate=SR)
            start = position / SR
            truth.append((start + alignment.words[0].start, start + alignment.words[-1].end))
            parts.append(audio.samples)
            position += len(audio.samples)
    mono = np.concatenate(parts)
    path = tmp_path_factory.mktemp("timeline") / "talk.wav"
    sf.write(path, np.stack([mono, mono], axis=1), SR)
    return path, truth


@pytest.fixture
def reasoner(tiny_model, tiny_tokenizer):
    lm = EmotionLM(tiny_model, tiny_tokenizer, name="tiny")
    return EmotionReasoner(lm, labels="iemocap4", strategy="minimal", mode="score")


@pytest.fixture
def fake_asr(monkeypatch):
    """An ``emollm.asr`` whose transcribe() gives the sentences in turn (segments come in time order)."""
    calls = []

    def transcribe(audio, backend="pocketsphinx", *, sample_rate=None):
        calls.append(backend)
        text = SENTENCES[(len(calls) - 1) % len(SENTENCES)][0]
        return types.SimpleNamespace(text=text, confidence=0.9, notes=[], words=[], backend=backend)

    module = types.ModuleType("emollm.asr")
    module.transcribe = transcribe
    module.check_backend = lambda name: None if name in ("pocketsphinx", "fake") else f"unknown ASR {name!r}"
    monkeypatch.setitem(sys.modules, "emollm.asr", module)
    return calls


def _rows(folder):
    return [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]


# -- voice activity ------------------------------------------------------------------------------------------


def test_find_speech_finds_each_sentence_where_it_is(recording):
    path, truth = recording
    found = find_speech(path)
    assert len(found) == len(truth), found
    for (start, end), (true_start, true_end) in zip(found, truth):
        assert abs(start - true_start) < 0.2 and abs(end - true_end) < 0.2, (found, truth)


def test_min_silence_merges_close_sentences(recording):
    path, truth = recording
    assert len(find_speech(path, min_silence=0.9)) == len(truth) - 1  # the 0.8 s pause no longer splits


def test_the_file_is_read_in_blocks_never_whole(recording, monkeypatch):
    path, _ = recording
    reads = []

    class Spy(sf.SoundFile):
        def read(self, frames=-1, *args, **kwargs):
            reads.append(frames)
            return super().read(frames, *args, **kwargs)

    monkeypatch.setattr(vad, "BLOCK_SECONDS", 0.5)
    monkeypatch.setattr(sf, "SoundFile", Spy)
    scan = vad.scan_speech(path)
    assert reads and max(reads) == int(0.5 * SR) and -1 not in reads
    assert scan.max_block <= 0.5 * SR
    monkeypatch.undo()
    whole = find_speech(path)  # 30 s blocks: the whole file in one
    assert len(scan.segments) == len(whole)
    assert all(abs(a - b) < 0.02 for pair in zip(scan.segments, whole) for a, b in zip(*pair))


def test_memory_stays_bounded_by_a_block_not_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(vad, "BLOCK_SECONDS", 2.0)
    rng = np.random.default_rng(1)

    def write(minutes):
        path = tmp_path / f"{minutes}.wav"
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as handle:
            for _ in range(minutes * 6):  # 10 s at a time
                handle.write(rng.normal(0, 0.01, 160000).astype(np.float32))
        return path

    short, long = write(1), write(8)
    vad.scan_speech(short)  # imports and caches first
    peaks = {}
    for name, path in (("short", short), ("long", long)):
        tracemalloc.start()
        vad.scan_speech(path)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    whole_long = 8 * 60 * 16000 * 4  # the long file as float32: 31 MB
    assert peaks["long"] < whole_long / 3, peaks
    assert peaks["long"] < 2 * peaks["short"] + 2e6, peaks  # 8x the audio, not 8x the memory


# -- the timeline ------------------------------------------------------------------------------------------


def test_timeline_writes_every_output(recording, reasoner, fake_asr, tmp_path):
    import parselmouth
    from parselmouth.praat import call

    path, truth = recording
    result = run_timeline(path, tmp_path / "out", reasoner=reasoner, asr="pocketsphinx", progress=False)
    assert fake_asr == ["pocketsphinx"] * len(truth)
    rows = _rows(tmp_path / "out")
    assert rows == result.segments and len(rows) == len(truth)
    for row, (start, end) in zip(rows, truth):
        assert abs(row["start"] - start) < 0.2 and abs(row["end"] - end) < 0.2
        assert row["label"] in reasoner.labels.labels and abs(sum(row["distribution"].values()) - 1) < 1e-4
        assert row["transcript"] and row["prosody"].startswith("Speech rate")
    assert rows[1]["transcript"] == SENTENCES[1][0]

    table = (tmp_path / "out" / "segments.csv").read_text().splitlines()
    assert table[0].startswith("index,start,end,duration,transcript,label,p_neutral,p_happy,p_sad,p_angry")
    assert len(table) == 1 + len(truth)
    assert (tmp_path / "out" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["segments"] == len(truth) and summary["notes"] == []

    grid = parselmouth.read(str(tmp_path / "out" / "timeline.TextGrid"))
    names = [call(grid, "Get tier name", i) for i in range(1, int(call(grid, "Get number of tiers")) + 1)]
    assert names == ["words", "phones", "vowels", "emotion"]
    assert abs(call(grid, "Get end time") - sf.info(path).duration) < 0.01
    emotions = [call(grid, "Get label of interval", 4, i) for i in range(1, int(call(grid, "Get number of intervals", 4)) + 1)]  # fmt: skip
    assert [e for e in emotions if e] == [row["label"] for row in rows]
    words = [call(grid, "Get label of interval", 1, i) for i in range(1, int(call(grid, "Get number of intervals", 1)) + 1)]  # fmt: skip
    assert "kids" in words and "alone" in words
    first_vowel = next(
        call(grid, "Get label of interval", 3, i)
        for i in range(1, int(call(grid, "Get number of intervals", 3)) + 1)
        if call(grid, "Get label of interval", 3, i)
    )
    assert first_vowel.endswith("dB") and "Hz" in first_vowel


def test_previous_segments_are_the_context(recording, reasoner, fake_asr, tmp_path, monkeypatch):
    path, _ = recording
    seen = []
    real = reasoner.predict_batch

    def spy(items, **kwargs):
        seen.append(items[0]["context"])
        return real(items, **kwargs)

    monkeypatch.setattr(reasoner, "predict_batch", spy)
    run_timeline(path, tmp_path / "out", reasoner=reasoner, context=2, progress=False)
    assert seen[0] == [] and seen[1] == [("Speaker", SENTENCES[0][0])]
    assert [text for _, text in seen[3]] == [SENTENCES[1][0], SENTENCES[2][0]]  # the last two only


def test_an_interrupted_run_resumes_without_writing_a_segment_twice(
    recording, reasoner, tmp_path, monkeypatch
):
    path, truth = recording
    out = tmp_path / "out"
    real, calls = reasoner.predict_batch, []

    def dies_on_the_third(items, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(items, **kwargs)

    monkeypatch.setattr(reasoner, "predict_batch", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_timeline(path, out, reasoner=reasoner, asr="none", progress=False)
    assert len(_rows(out)) == 2 and not (out / "segments.csv").exists()
    with open(out / "segments.jsonl", "a") as handle:  # killed in the middle of writing the third line
        handle.write('{"id": "9.99-10.5", "start"')

    monkeypatch.setattr(reasoner, "predict_batch", real)
    result = run_timeline(path, out, reasoner=reasoner, asr="none", progress=False)
    rows = _rows(out)
    assert result.predicted == len(truth) - 2 and len(rows) == len(truth)
    assert len({row["start"] for row in rows}) == len(rows)  # no duplicate
    assert [row["index"] for row in rows] == list(range(len(truth)))
    assert all(row["transcript"] is None for row in rows)

    again = run_timeline(path, out, reasoner=reasoner, asr="none", progress=False)  # all done: nothing to do
    assert again.predicted == 0 and _rows(out) == rows


def test_other_settings_are_refused_unless_overwrite(recording, reasoner, tmp_path):
    path, truth = recording
    out = tmp_path / "out"
    run_timeline(path, out, reasoner=reasoner, asr="none", progress=False)
    with pytest.raises(ConfigError, match=r"other settings \(vad.min_silence: 0.3 -> 0.9\)"):
        run_timeline(path, out, reasoner=reasoner, asr="none", min_silence=0.9, progress=False)
    result = run_timeline(
        path, out, reasoner=reasoner, asr="none", min_silence=0.9, overwrite=True, progress=False
    )
    assert len(result.segments) == len(truth) - 1 == len(_rows(out))


# -- malformed inputs --------------------------------------------------------------------------------------


def _write(tmp_path, name, samples, sr=16000):
    path = tmp_path / name
    sf.write(path, samples.astype(np.float32), sr)
    return path


def test_noise_only_gives_no_segment_and_a_note(tmp_path, reasoner, capsys):
    noise = np.random.default_rng(2).normal(0, 0.05, 8 * 16000)
    path = _write(tmp_path, "noise.wav", noise)
    result = run_timeline(path, tmp_path / "out", reasoner=reasoner, asr="none", progress=False)
    assert result.segments == [] and "no speech found" in result.notes[0] and "noise" in result.notes[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["segments"] == 0 and summary["notes"] == result.notes
    assert (tmp_path / "out" / "timeline.png").is_file() and (
        tmp_path / "out" / "timeline.TextGrid"
    ).is_file()
    assert (tmp_path / "out" / "segments.csv").read_text().count("\n") == 1  # the header


@pytest.mark.parametrize("kind", ["sustained", "melody"])
def test_music_like_tones_give_no_segment_and_a_note(tmp_path, kind):
    t = np.arange(8 * 16000) / 16000
    if kind == "sustained":  # a held chord of harmonic tones
        music = sum(0.05 * np.sin(2 * np.pi * f * k * t) / k for f in (220, 277.2, 329.6) for k in (1, 2, 3))
    else:  # held notes, one per second, with short gaps
        notes = np.repeat([220, 247, 262, 294, 330, 349, 392, 440], 16000)
        music = 0.2 * np.sin(2 * np.pi * np.cumsum(notes) / 16000) * ((t % 1.0) < 0.8)
    scan = vad.scan_speech(_write(tmp_path, "music.wav", music))
    assert scan.segments == []
    assert "tonal" in scan.notes[0] and "music" in scan.notes[0]


def test_silence_and_unreadable_files(tmp_path):
    assert "silent" in vad.scan_speech(_write(tmp_path, "silence.wav", np.zeros(16000))).notes[0]
    (tmp_path / "fake.wav").write_text("not audio")
    with pytest.raises(AudioError, match="cannot stream audio file .*WAV, FLAC"):
        find_speech(tmp_path / "fake.wav")
    with pytest.raises(AudioError, match="does not exist"):
        find_speech(tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match="max_segment"):
        find_speech(np.zeros(16000), sample_rate=16000, max_segment=0.5)


def test_a_long_segment_is_split_at_its_quietest_point(recording):
    path, truth = recording
    # a 1.5 s pause is not a pause at min_silence=2: sentences 3 and 4 (with the gap) would be 4.3 s
    found = find_speech(path, min_silence=2.0, max_segment=3.0)
    assert all(end - start <= 3.0 + 1e-6 for start, end in found)
    assert len(found) >= 3


def test_speech_with_no_pause_is_cut_into_pieces_neither_too_long_nor_too_short():
    sr = 16000
    t = np.arange(50 * sr) / sr
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 1.5 * t)) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 * ((t % 0.25) < 0.17)  # 80 ms dips
    hiss = 1e-5 * (1 + t) * np.random.default_rng(0).standard_normal(len(t))  # quietest at the start
    found = find_speech(voice + hiss, sample_rate=sr)  # max_segment 20 s, min_speech 0.25 s
    assert all(0.25 <= end - start <= 20.0 + 1e-6 for start, end in found), found
    assert found[0][0] < 0.1 and found[-1][1] > 49.9
    assert all(a[1] == b[0] for a, b in zip(found, found[1:])), found


def test_run_timeline_keeps_the_min_silence_of_its_vad_settings(tmp_path, reasoner):
    path = _write(tmp_path, "silence.wav", np.zeros(16000))
    out = tmp_path / "out"
    run_timeline(path, out, reasoner=reasoner, asr="none", vad=vad.VadConfig(min_silence=0.5), progress=False)
    assert json.loads((out / "timeline.json").read_text())["settings"]["vad"]["min_silence"] == 0.5


def test_vad_settings_of_the_wrong_type_are_named():
    with pytest.raises(ConfigError, match=r"threshold_db must be a number \(dB\), got '10'"):
        vad.VadConfig(threshold_db="10")


# -- command line ------------------------------------------------------------------------------------------


def test_cli_timeline_and_its_errors(recording, tiny_model_dir, tmp_path, capsys):
    path, truth = recording
    command = ["timeline", str(path), "--output", str(tmp_path / "out"), "--asr", "none"]
    command += ["--model", str(tiny_model_dir), "--labels", "iemocap4", "--mode", "score", "--no-progress"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(truth)} segments in ") and "timeline.TextGrid" in out
    assert main(command) == 0 and "resumed: 4 segments were already done" in capsys.readouterr().out
    assert main([*command, "--min-silence", "0.9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emollm timeline: error: ") and "--overwrite" in err and err.count("\n") == 1
    assert (
        main(["timeline", str(tmp_path / "nope.wav"), "--output", str(tmp_path / "o2"), "--asr", "none"]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_cli_prosody_textgrid_out(tmp_path, capsys):
    import parselmouth
    from parselmouth.praat import call

    from emollm.audio import save_audio

    audio, _ = synthesize("Kids are talking by the door")
    wav = save_audio(audio, tmp_path / "kids.wav")
    grid_path = tmp_path / "kids.TextGrid"
    command = ["prosody", str(wav), "--transcript", "Kids are talking by the door", "--textgrid-out"]
    assert main([*command, str(grid_path)]) == 0
    assert f"TextGrid: {grid_path}" in capsys.readouterr().out
    grid = parselmouth.read(str(grid_path))
    names = [call(grid, "Get tier name", i) for i in range(1, int(call(grid, "Get number of tiers")) + 1)]
    assert names == ["words", "phones", "vowels"]
    words = [call(grid, "Get label of interval", 1, i) for i in range(1, int(call(grid, "Get number of intervals", 1)) + 1)]  # fmt: skip
    assert [w for w in words if w] == ["kids", "are", "talking", "by", "the", "door"]
    assert main([*command, str(tmp_path / "kids.txt")]) == 2
    assert "--textgrid-out" in capsys.readouterr().err and not (tmp_path / "kids.txt").exists()
