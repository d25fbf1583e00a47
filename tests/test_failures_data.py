"""Malformed manifests: each gets a DataError naming the line, or a documented repair with a warning.

An unclosed quote must not swallow the rows after it into one transcript, a row with missing fields must
not become an unlabelled utterance, and a manifest saved as Windows-1252 (Excel's "CSV" on Windows) must
not end in a ``UnicodeDecodeError`` traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from emollm.data import read_manifest, read_meld
from emollm.errors import DataError

HEADER = "id,path,transcript,label\n"
ROWS = [f"u{i},u{i}.wav,line {i},happy\n" for i in range(1, 13)]


def test_an_unclosed_quote_is_refused_naming_its_line(tmp_path: Path):
    path = tmp_path / "m.csv"
    rows = list(ROWS)
    rows[4] = 'u5,u5.wav,"I never said that,angry\n'  # the quote is never closed ...
    rows[10] = 'u11,u11.wav,I said "no",sad\n'  # ... until this one, six lines later
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"line 6: .*'transcript'.* lines 6-12.*unclosed quote") as caught:
        read_manifest(path)
    assert '""' in str(caught.value)  # says how to write a quote inside a quoted cell


def test_an_unclosed_quote_at_the_end_of_the_file_is_refused(tmp_path: Path):
    path = tmp_path / "m.tsv"
    path.write_text(
        'id\ttranscript\tlabel\na\tfine\thappy\nb\t"oh no\tsad\nc\tok\tneutral\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"line 3: .*'transcript'.* lines 3-4.*unclosed quote"):
        read_manifest(path)


def test_a_well_quoted_manifest_still_reads(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + 'u1,a.wav,"Well, I said ""no""",angry\n', encoding="utf-8")
    assert [u.transcript for u in read_manifest(path)] == ['Well, I said "no"']


def test_a_row_with_missing_fields_is_refused_naming_its_line(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + ROWS[0] + "u2,u2.wav\n" + ROWS[2], encoding="utf-8")
    with pytest.raises(
        DataError, match=r"line 3: 2 fields, but the header has 4: .*; missing: \['transcript', 'label'\]"
    ):
        read_manifest(path)
    path.write_text(HEADER + ROWS[0] + "u2,u2.wav,hi,happy,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3: 5 fields, but the header has 4"):
        read_manifest(path)


def test_a_windows_1252_manifest_is_read_with_a_warning(tmp_path: Path, caplog):
    path = tmp_path / "m.csv"
    path.write_bytes(
        (HEADER + "u1,a.wav,Hello,happy\n").encode()
        + "u2,b.wav,Un café,neutral\nu3,c.wav,You must’ve,sad\n".encode("cp1252")
    )
    with caplog.at_level(logging.WARNING, logger="emollm.data"):
        utts = read_manifest(path)
    assert [u.transcript for u in utts] == ["Hello", "Un café", "You must’ve"]
    assert "not valid UTF-8" in caplog.text and "line 3" in caplog.text and "Windows-1252" in caplog.text
    assert "save it as UTF-8" in caplog.text


def test_a_utf16_manifest_is_read_and_binary_is_refused(tmp_path: Path):
    path = tmp_path / "m.tsv"
    path.write_bytes("id\ttranscript\nu1\tcafé\n".encode("utf-16"))  # Excel's "Unicode text"
    assert [u.transcript for u in read_manifest(path)] == ["café"]
    path.write_bytes(b"id\ttranscript\nu1\tab\x00cd\n")
    with pytest.raises(DataError, match=r"line 2 holds a NUL byte.*save it as UTF-8"):
        read_manifest(path)


def test_meld_rows_swallowed_by_an_unclosed_quote_are_refused(tmp_path: Path):
    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
    path = tmp_path / "dev_sent_emo.csv"
    path.write_text(
        header
        + '1,"Oh no,Ross,sadness,negative,0,0\n'
        + "2,Hi,Rachel,joy,positive,0,1\n"
        + '3,"Fine",Monica,neutral,neutral,0,2\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"line 2: .*'Utterance'.* lines 2-4.*unclosed quote"):
        read_meld(path)
    path.write_text(header + '1,"Oh\nno",Ross,sadness,negative,0,0\n', encoding="utf-8")
    assert [u.transcript for u in read_meld(path)] == ["Oh\nno"]  # MELD text may hold a line break
    path.write_text(header + "1,Oh no,Ross,sadness\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: 4 fields, but the header has 7"):
        read_meld(path)
