"""Dataset readers, split helpers and load_corpus on tiny fixtures built here (no shared data needed)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emollm.data import (
    Turn,
    Utterance,
    check_disjoint_speakers,
    iemocap_split,
    leave_one_speaker_out,
    load_corpus,
    ravdess_split,
    read_iemocap,
    read_manifest,
    read_meld,
    read_ravdess,
    repair_text,
    speaker_folds,
    split_by_speaker,
    to_dataset,
)
from emollm.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"


def write_sine(path: Path, seconds: float = 0.5, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)


def round_trip(utterances: list[Utterance]) -> list[Utterance]:
    return [Utterance.from_dict(row) for row in to_dataset(utterances)]


# --------------------------------------------------------------------------------------------- RAVDESS

RELEASE_FILES = [
    "Actor_01/03-01-05-02-01-01-01.wav",  # angry, strong, statement 1, male
    "Actor_02/03-01-01-01-02-02-02.flac",  # neutral, female
    "Actor_02/03-02-03-01-01-01-02.wav",  # song, happy
    "Actor_02/01-01-03-01-01-01-02.mp4",  # video: skipped
    "Actor_15/03-01-02-01-01-01-15.wav",  # calm, dev actor
    "Actor_20/03-01-08-02-02-01-20.wav",  # surprised, test actor
]


@pytest.fixture
def ravdess_release(tmp_path: Path) -> Path:
    root = tmp_path / "ravdess_release"
    for name in RELEASE_FILES:
        path = root / name
        if path.suffix in (".wav", ".flac"):
            write_sine(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root


def write_ravdess_manifest(root: Path) -> None:
    rows = [
        "path,emotion,intensity,statement,transcript,repetition,actor,gender,duration_s",
        "audio/Actor_01/03-01-01-01-01-01-01.flac,neutral,normal,01,Kids are talking by the door,01,1,male,3.303",
        "audio/Actor_16/03-01-07-02-02-02-16.flac,disgust,strong,02,Dogs are sitting by the door,02,16,female,3.5",
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_ravdess_release_layout(ravdess_release: Path):
    utts = read_ravdess(ravdess_release)
    assert [u.id for u in utts] == [
        "ravdess/03-01-01-01-02-02-02",
        "ravdess/03-01-02-01-01-01-15",
        "ravdess/03-01-05-02-01-01-01",
        "ravdess/03-01-08-02-02-01-20",
        "ravdess/03-02-03-01-01-01-02",
    ]
    angry = utts[2]
    assert angry.label == "angry"
    assert angry.speaker == "ravdess/01"
    assert angry.gender == "male"
    assert angry.transcript == "Kids are talking by the door"
    assert angry.audio_path == str(ravdess_release / "Actor_01" / "03-01-05-02-01-01-01.wav")
    assert angry.meta == {
        "intensity": "strong",
        "statement": 1,
        "repetition": 1,
        "actor": 1,
        "vocal_channel": "speech",
    }
    neutral = utts[0]
    assert (neutral.label, neutral.gender, neutral.transcript) == (
        "neutral",
        "female",
        "Dogs are sitting by the door",
    )
    assert utts[4].meta["vocal_channel"] == "song"
    assert [u.label for u in read_ravdess(ravdess_release, actors=[15])] == ["calm"]


def test_ravdess_shared_layout(tmp_path: Path):
    root = tmp_path / "ravdess"
    write_ravdess_manifest(root)
    utts = read_ravdess(root)
    assert [(u.id, u.label, u.speaker, u.gender) for u in utts] == [
        ("ravdess/03-01-01-01-01-01-01", "neutral", "ravdess/01", "male"),
        ("ravdess/03-01-07-02-02-02-16", "disgust", "ravdess/16", "female"),
    ]
    assert utts[1].meta == {
        "intensity": "strong",
        "statement": 2,
        "repetition": 2,
        "actor": 16,
        "vocal_channel": "speech",
        "duration_s": 3.5,
    }
    assert utts[1].audio_path == str(root / "audio/Actor_16/03-01-07-02-02-02-16.flac")
    assert round_trip(utts) == utts


def test_ravdess_label_set_drops_and_reports(ravdess_release: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="emollm.data"):
        utts = read_ravdess(ravdess_release, labels="ekman7")
    assert sorted(u.label for u in utts) == ["angry", "happy", "neutral", "surprised"]
    assert "dropped 1 of 5" in caplog.text
    assert "'calm' x1" in caplog.text


def test_ravdess_bad_file_name(ravdess_release: Path):
    (ravdess_release / "Actor_01" / "03-01-09-01-01-01-01.wav").touch()  # emotion 09 does not exist
    with pytest.raises(DataError, match=r"03-01-09-01-01-01-01\.wav.*MM-VV-EE-II-SS-RR-AA"):
        read_ravdess(ravdess_release)


def test_ravdess_malformed_inputs(tmp_path: Path, ravdess_release: Path):
    (ravdess_release / "Actor_02" / "03-01-01-01-01-01-04.wav").touch()  # actor 04 in Actor_02
    with pytest.raises(DataError, match="names actor 04 but lies in Actor_02"):
        read_ravdess(ravdess_release)
    root = tmp_path / "contradiction"
    write_ravdess_manifest(root)
    text = (root / "manifest.csv").read_text().replace("neutral,normal", "happy,normal")
    (root / "manifest.csv").write_text(text)
    with pytest.raises(DataError, match="emotion 'happy' contradicts the file name"):
        read_ravdess(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither manifest.csv nor Actor_XX"):
        read_ravdess(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_ravdess(tmp_path / "missing")
    with pytest.raises(ConfigError, match="actors must be whole numbers 1-24, got 25"):
        read_ravdess(ravdess_release, actors=[25])


# ------------------------------------------------------------------------------------------------ MELD

MELD_HEADER = b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n"
MELD_ROWS = [  # shuffled on purpose; cp1252 bytes, C1-free raw bytes and UTF-8 mojibake mixed in
    b'3,"Oh, I\x92m sorry\x85",Rachel,sadness,negative,0,2,1,3,"00:01:02,000","00:01:03,500"\r\n',
    b'4,\x93Great\x94 \x96 just great.,Ross,anger,negative,1,0,2,5,"00:10:00,000","00:10:02,000"\r\n',
    b'1,You must\x92ve had your hands full.,Chandler,neutral,neutral,0,0,1,3,"00:01:00,000","00:01:01,000"\r\n',
    b'5,"It\xc3\xa2\xe2\x82\xac\xe2\x84\xa2s fine, Nestl\xc3\xa9!",Monica,joy,positive,1,1,2,5,"00:10:03,000","00:10:04,000"\r\n',
    b'2,What?,Joey,surprise,negative,0,1,1,3,"00:01:01,500","00:01:02,000"\r\n',
]


@pytest.fixture
def meld_root(tmp_path: Path) -> Path:
    root = tmp_path / "meld"
    root.mkdir()
    (root / "train_sent_emo.csv").write_bytes(MELD_HEADER + b"".join(MELD_ROWS))
    return root


def test_repair_text():
    assert repair_text("You must\x92ve") == "You must've"
    assert repair_text("\x93Hi\x94\x85 \x97 itâ€™s me") == '"Hi"... - it\'s me'
    assert repair_text("Olé! Adiós, café") == "Olé! Adiós, café"


def test_meld_reader(meld_root: Path):
    utts = read_meld(meld_root, split="train")
    assert [u.id for u in utts] == [
        "meld/train/dia0_utt0",
        "meld/train/dia0_utt1",
        "meld/train/dia0_utt2",
        "meld/train/dia1_utt0",
        "meld/train/dia1_utt1",
    ]
    assert [u.transcript for u in utts] == [
        "You must've had your hands full.",
        "What?",
        "Oh, I'm sorry...",
        '"Great" - just great.',
        "It's fine, Nestlé!",
    ]
    assert [u.label for u in utts] == ["neutral", "surprise", "sadness", "anger", "joy"]
    third = utts[2]
    assert third.speaker == "meld/Rachel"
    assert third.dialogue_id == "meld/train/0"
    assert third.turn == 2
    assert third.context == [
        Turn("Chandler", "You must've had your hands full."),
        Turn("Joey", "What?"),
    ]
    assert third.meta == {
        "sentiment": "negative",
        "season": 1,
        "episode": 3,
        "start_time": "00:01:02,000",
        "end_time": "00:01:03,500",
    }
    assert utts[3].context == []  # a new dialogue starts without context
    assert utts[4].context == [Turn("Ross", '"Great" - just great.')]
    assert read_meld(meld_root / "train_sent_emo.csv", context_turns=1)[2].context == [Turn("Joey", "What?")]
    assert round_trip(utts) == utts


def test_meld_other_label_set_counts_drops(meld_root: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="emollm.data"):
        utts = read_meld(meld_root, split="train", labels="sentiment3")
    # surprise has no sentiment; the dropped row still appears as context of the next one
    assert [u.label for u in utts] == ["neutral", "negative", "negative", "positive"]
    assert utts[1].context[-1] == Turn("Joey", "What?")
    assert "dropped 1 of 5" in caplog.text and "'surprise' x1" in caplog.text


def test_meld_errors(meld_root: Path, tmp_path: Path):
    with pytest.raises(DataError, match="dev_sent_emo.csv.*does not exist.*train_sent_emo.csv"):
        read_meld(meld_root, split="dev")
    with pytest.raises(
        ConfigError, match=r"unknown MELD split 'valid'; accepted: \['train', 'dev', 'test'\]"
    ):
        read_meld(meld_root, split="valid")
    bad = tmp_path / "dev_sent_emo.csv"
    bad.write_text("Utterance,Speaker,Dialogue_ID,Utterance_ID\nHi,Ross,0,0\n")
    with pytest.raises(DataError, match=r"lacks columns \['Emotion'\]; columns seen"):
        read_meld(bad)
    bad.write_text("Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\nHi,Ross,joy,zero,0\n")
    with pytest.raises(DataError, match="Dialogue_ID 'zero' is not a whole number"):
        read_meld(bad)


# --------------------------------------------------------------------------------------------- IEMOCAP

IEMOCAP4_IDS = [
    "iemocap/Ses01F_impro01_F000",
    "iemocap/Ses01F_impro01_M000",
    "iemocap/Ses01F_impro01_F002",
    "iemocap/Ses01F_script01_1_F000",
    "iemocap/Ses01F_script01_1_M000",
]


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    root = tmp_path / "iemocap"
    shutil.copytree(FIXTURES / "iemocap", root)
    for utt in ("F000", "M000", "F001", "M001", "F002"):  # wavs for impro01 only
        write_sine(root / "Session1/sentences/wav/Ses01F_impro01" / f"Ses01F_impro01_{utt}.wav")
    return root


def test_iemocap_reader(iemocap_root: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="emollm.data"):
        utts = read_iemocap(iemocap_root)
    assert [u.id for u in utts] == IEMOCAP4_IDS
    assert [u.label for u in utts] == ["neutral", "angry", "sad", "happy", "happy"]
    assert "dropped 3 of 8" in caplog.text
    for raw in ("'xxx' x1", "'fru' x1", "'sur' x1"):
        assert raw in caplog.text

    f000, m000, f002, exc, hap = utts
    assert (m000.speaker, m000.gender, f000.speaker, f000.gender) == (
        "iemocap/Ses01M",
        "male",
        "iemocap/Ses01F",
        "female",
    )
    assert m000.dialogue_id == "iemocap/Ses01F_impro01"
    assert [u.turn for u in utts] == [0, 1, 5, 0, 1]
    assert m000.transcript == "Do you have your forms?"
    assert m000.context == [Turn("Ses01F", "Excuse me.")]
    assert f002.context == [
        Turn("Ses01F", "Excuse me."),
        Turn("Ses01M", "Do you have your forms?"),
        Turn("Ses01F", "Yeah."),
        Turn("Ses01M", "Mm-hmm."),
        Turn("Ses01M", "Let me see them."),
    ]
    assert m000.meta == {
        "session": 1,
        "raw_label": "ang",
        "valence": 1.5,
        "activation": 4.0,
        "dominance": 4.5,
        "start": 8.5,
        "end": 10.0,
        "scripted": False,
    }
    assert exc.meta["raw_label"] == "exc" and exc.meta["scripted"] is True
    assert f000.label_distribution == {"neutral": 1.0}
    assert m000.label_distribution == {"angry": 0.6667, "neutral": 0.3333}
    assert hap.label_distribution == {"happy": 0.8333, "sad": 0.1667}
    assert f000.audio_path == str(
        iemocap_root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    )
    assert exc.audio_path is None  # no wav written for the scripted dialogue
    assert round_trip(utts) == utts


def test_iemocap_six_classes_and_context_turns(iemocap_root: Path):
    utts = {u.id: u for u in read_iemocap(iemocap_root, labels="iemocap6", context_turns=2)}
    m001 = utts["iemocap/Ses01F_impro01_M001"]
    assert m001.label == "frustrated"
    assert m001.label_distribution == {"frustrated": 0.75, "angry": 0.25}
    assert utts["iemocap/Ses01F_script01_1_F000"].label == "excited"
    assert m001.context == [Turn("Ses01F", "Yeah."), Turn("Ses01M", "Mm-hmm.")]
    assert len(utts) == 6


def test_iemocap_malformed(iemocap_root: Path):
    path = iemocap_root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    lines = path.read_text().splitlines()
    lines[2] = "[8.5000 - ]\tSes01F_impro01_M000\tang\t[1.5000, 4.0000]"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Ses01F_impro01\.txt' line 3: .* does not match \[START - END\]"):
        read_iemocap(iemocap_root)
    lines[2] = "[8.5000 - 10.0000]\tSpeaker7\tang\t[1.5000, 4.0000, 4.5000]"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="utterance id 'Speaker7' does not look like"):
        read_iemocap(iemocap_root)
    with pytest.raises(ConfigError, match=r"unknown IEMOCAP session 6; accepted: \[1, 2, 3, 4, 5\]"):
        read_iemocap(iemocap_root, sessions=[6])
    with pytest.raises(DataError, match="Session2"):
        read_iemocap(iemocap_root, sessions=[2])


# -------------------------------------------------------------------------------------------- manifest


def test_manifest_csv(tmp_path: Path, caplog):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "clips.csv"
    path.write_text(
        "path,transcript,label,speaker,gender,turn,corpus\n"
        "a.wav,Hello there,Happiness,s1,F,0,demo\n"
        "/abs/b.wav,Go away,bored,s2,male,1,demo\n"
        ",No audio,MAD,s2,m,,\n"
        "c.wav,Unlabelled,,s3,,2,demo\n"
    )
    with caplog.at_level(logging.WARNING, logger="emollm.data"):
        utts = read_manifest(path, labels="ravdess8")
    assert [(u.id, u.label, u.gender, u.turn) for u in utts] == [
        ("clips/1", "happy", "female", 0),
        ("clips/3", "angry", "male", None),
        ("clips/4", None, None, 2),
    ]
    assert utts[0].audio_path == str(tmp_path / "sub" / "a.wav")
    assert utts[1].audio_path is None
    assert utts[0].meta == {"corpus": "demo"} and utts[1].meta == {"corpus": None}
    assert "dropped 1 of 3" in caplog.text and "'bored' x1" in caplog.text
    raw = read_manifest(path, root=tmp_path)  # no label set: labels kept as written, nothing dropped
    assert [u.label for u in raw] == ["Happiness", "bored", "MAD", None]
    assert raw[0].audio_path == str(tmp_path / "a.wav") and raw[1].audio_path == "/abs/b.wav"
    assert round_trip(utts) == utts


def test_manifest_jsonl_and_tsv(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    rows = [
        {"id": "x1", "text": "hi", "emo": "joy", "speaker": "a", "split": "train"},
        {"id": "x2", "text": "no", "emo": "sadness", "speaker": "b", "split": "test", "extra": [1, 2]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    utts = read_manifest(path, columns={"label": "emo"}, labels="meld7")
    assert [(u.id, u.transcript, u.label, u.speaker) for u in utts] == [
        ("x1", "hi", "joy", "a"),
        ("x2", "no", "sadness", "b"),
    ]
    assert utts[1].meta == {"split": "test", "extra": [1, 2]}
    tsv = tmp_path / "m.tsv"
    tsv.write_text("id\ttranscript\tlabel\nt1\tok, fine\tneutral\n")
    assert [(u.id, u.transcript, u.label) for u in read_manifest(tsv)] == [("t1", "ok, fine", "neutral")]


def test_manifest_errors(tmp_path: Path):
    with pytest.raises(
        DataError, match=r"unsupported extension; accepted: \['.csv', '.json-lines', '.jsonl'"
    ):
        read_manifest(tmp_path / "m.xlsx")
    path = tmp_path / "m.csv"
    path.write_text("file,emotion\na.wav,happy\n")
    with pytest.raises(DataError, match=r"needs an audio column .* columns seen: \['file', 'emotion'\]"):
        read_manifest(path)
    assert read_manifest(path, columns={"audio_path": "file"})[0].audio_path == str(tmp_path / "a.wav")
    with pytest.raises(DataError, match=r"no column 'wav' \(given for 'audio_path'\)"):
        read_manifest(path, columns={"audio_path": "wav"})
    with pytest.raises(ConfigError, match=r"unknown Utterance fields \['emotion'\]"):
        read_manifest(path, columns={"emotion": "emotion"})
    path.write_text("id,path,gender\na,a.wav,robot\n")
    with pytest.raises(DataError, match="line 2: gender 'robot' is not one of"):
        read_manifest(path)
    path.write_text("id,path\na,a.wav\na,b.wav\n")
    with pytest.raises(DataError, match="line 3: id 'a' repeats the id of line 2"):
        read_manifest(path)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "a.wav"}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object, got list"):
        read_manifest(jsonl)


# ---------------------------------------------------------------------------------------------- splits


def speakers(utts) -> set[str]:
    return {u.speaker for u in utts}


def ravdess_like() -> list[Utterance]:
    return [
        Utterance(f"ravdess/{actor:02d}-{i}", speaker=f"ravdess/{actor:02d}", meta={"actor": actor})
        for actor in range(1, 25)
        for i in range(2)
    ]


def test_ravdess_split_by_actor():
    utts = ravdess_like()
    parts = {name: ravdess_split(utts, name) for name in ("train", "dev", "test")}
    assert speakers(parts["train"]) == {f"ravdess/{a:02d}" for a in range(1, 15)}
    assert speakers(parts["dev"]) == {f"ravdess/{a:02d}" for a in range(15, 19)}
    assert speakers(parts["test"]) == {f"ravdess/{a:02d}" for a in range(19, 25)}
    assert [len(p) for p in parts.values()] == [28, 8, 12]
    check_disjoint_speakers(parts)
    assert len(ravdess_split(utts, "all")) == 48
    with pytest.raises(
        DataError, match=r"unknown RAVDESS split 'val'; accepted: \['train', 'dev', 'test', 'all'\]"
    ):
        ravdess_split(utts, "val")


def test_split_by_speaker_and_folds():
    utts = [Utterance(f"u{i}", speaker=s) for i, s in enumerate("aabbccddee")]
    parts = split_by_speaker(utts, ["a", "z"], dev_speakers=["b"])
    assert {k: [u.id for u in v] for k, v in parts.items()} == {
        "train": ["u4", "u5", "u6", "u7", "u8", "u9"],
        "dev": ["u2", "u3"],
        "test": ["u0", "u1"],
    }
    with pytest.raises(ConfigError, match=r"speakers \['a'\] are listed for both dev and test"):
        split_by_speaker(utts, ["a"], dev_speakers=["a"])
    folds = list(leave_one_speaker_out(utts))
    assert [(s, len(test)) for s, _, test in folds] == [(c, 2) for c in "abcde"]
    assert all(not speakers(train) & speakers(test) for _, train, test in folds)
    kfolds = speaker_folds(utts, n_folds=2)
    assert sorted(len(test) for _, test in kfolds) == [4, 6]
    assert set().union(*(speakers(test) for _, test in kfolds)) == set("abcde")
    assert all(not speakers(train) & speakers(test) for train, test in kfolds)
    with pytest.raises(
        ConfigError, match=r"n_folds must be between 2 and the number of speakers \(5\), got 6"
    ):
        speaker_folds(utts, n_folds=6)
    with pytest.raises(DataError, match="speaker 'a' appears in both the 'train' and 'test' splits"):
        check_disjoint_speakers({"train": utts[:1], "test": utts[1:2]})
    with pytest.raises(DataError, match="utterance 'n' has no speaker"):
        split_by_speaker([Utterance("n")], ["a"])


def test_iemocap_split_leaves_one_session_out():
    utts = [
        Utterance(f"s{s}{g}", speaker=f"iemocap/Ses0{s}{g}", meta={"session": s})
        for s in range(1, 6)
        for g in "FM"
    ]
    parts = iemocap_split(utts)
    assert speakers(parts["test"]) == {"iemocap/Ses05F", "iemocap/Ses05M"}
    assert len(parts["train"]) == 8 and not speakers(parts["train"]) & speakers(parts["test"])
    assert speakers(iemocap_split(utts, test_session=2)["test"]) == {"iemocap/Ses02F", "iemocap/Ses02M"}
    with pytest.raises(ConfigError, match="test_session must be one of"):
        iemocap_split(utts, test_session=0)


# ----------------------------------------------------------------------------------------- load_corpus


def test_load_corpus(tmp_path: Path, meld_root: Path, ravdess_release: Path, iemocap_root: Path):
    for name, src in (("ravdess", ravdess_release), ("iemocap", iemocap_root)):
        shutil.move(src, tmp_path / name)
    root = tmp_path
    assert [u.speaker for u in load_corpus("ravdess", "dev", data_root=root)] == ["ravdess/15"]
    assert [u.speaker for u in load_corpus("ravdess", "test", data_root=root)] == ["ravdess/20"]
    assert len(load_corpus("ravdess", data_root=root)) == 5
    meld = load_corpus("meld", "train", data_root=root, context_turns=0)
    assert len(meld) == 5 and all(u.context == [] for u in meld)
    assert len(load_corpus("meld", data_root=root)) == 5  # "all": every split file present
    assert [u.id for u in load_corpus("iemocap", "train", data_root=root)] == IEMOCAP4_IDS
    assert load_corpus("iemocap", "all", data_root=root, labels="iemocap6")[-1].label == "happy"
    assert load_corpus("iemocap", "test", data_root=root) == []  # the fixture has no Session5

    manifest = tmp_path / "m.csv"
    manifest.write_text("id,transcript,label,split\na,hi,happy,train\nb,yo,sad,test\n")
    assert [u.id for u in load_corpus(f"manifest:{manifest}", "test")] == ["b"]
    assert len(load_corpus(f"manifest:{manifest}")) == 2
    with pytest.raises(DataError, match=r"no rows with split 'dev'.*\['test', 'train'\]"):
        load_corpus(f"manifest:{manifest}", "dev")
    with pytest.raises(
        ConfigError, match=r"unknown corpus 'crema'; accepted: \['ravdess', 'meld', 'iemocap'"
    ):
        load_corpus("crema", data_root=root)
    with pytest.raises(DataError, match=r"unknown meld split 'validation'; accepted: \['train', 'dev'"):
        load_corpus("meld", "validation", data_root=root)
    with pytest.raises(DataError, match=r"unknown iemocap split 'dev'"):
        load_corpus("iemocap", "dev", data_root=root)
