"""The speech sources added for speaker variety: Queen's resource archive, G.722 prompts, reserved packages."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from recipes.prepare_data import decode, main
from recipes.sources import (PACKAGES, ResourceTableError, SourceFile, collect_queen, is_reserved,
                             queen_speech_table, speech_collector)
from vocoder.audio import AudioError

SR = 11_025


def tone(seconds: float, rate: int, frequency: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def queen_archive(entries) -> bytes:
    """A ``queen.1c``-style archive: QTBL header, entry table, then the payloads."""
    header = b"QTBL" + b"CEM10\0" + b"\0\0" + b"\1" + struct.pack(">H", len(entries))
    offset = len(header) + 21 * len(entries)
    table, payload = b"", b""
    for name, data in entries:
        table += name.encode().ljust(12, b"\0") + b"\1" + struct.pack(">II", offset + len(payload), len(data))
        payload += data
    return header + table + payload


def test_queen_speech_clips_are_found_and_decoded(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, tone(1.0, SR), SR, format="MP3")
    archive = tmp_path / "usr/share/scummvm/queen/queen.1c"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(queen_archive([("ROOM1.PCX", b"x" * 50), ("0100A1P1.SB", buffer.getvalue())]))
    items = list(collect_queen(tmp_path, "flight-of-the-amazon-queen"))
    assert [i.recording_id for i in items] == ["flight-of-the-amazon-queen/0100A1P1.SB"]
    assert items[0].caption == "a person speaking English" and items[0].language == "en"
    wav, rate = decode(items[0])
    assert rate == SR and abs(wav.shape[-1] - SR) < SR // 10 and np.isfinite(wav.numpy()).all()
    assert PACKAGES["flight-of-the-amazon-queen"] is collect_queen


def test_a_damaged_queen_archive_is_refused(tmp_path):
    bad = tmp_path / "queen.1c"
    bad.write_bytes(b"NOPE" + b"\0" * 40)
    with pytest.raises(ResourceTableError, match="QTBL"):
        queen_speech_table(bad)
    bad.write_bytes(queen_archive([("A.SB", b"abc")])[:-3] + struct.pack(">I", 0))
    data = bytearray(queen_archive([("A.SB", b"abc")]))
    data[15 + 17:15 + 21] = struct.pack(">I", 10_000)  # size past the end
    bad.write_bytes(bytes(data))
    with pytest.raises(ResourceTableError, match="outside"):
        queen_speech_table(bad)
    garbage = SourceFile("q", "q/A.SB", "x", str(bad), span=(0, 20))
    with pytest.raises(AudioError):
        decode(garbage)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg")
def test_g722_prompts_decode_through_ffmpeg(tmp_path):
    source = tmp_path / "in.wav"
    sf.write(source, tone(1.0, 16_000), 16_000)
    prompt = tmp_path / "usr/share/asterisk/sounds/ru_RU_f_x/hello.g722"
    prompt.parent.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-ar", "16000", "-f", "g722", str(prompt)], check=True)
    items = list(speech_collector("usr/share/asterisk/sounds", "ru", ".g722", "g722")(tmp_path, "asterisk-ru"))
    assert len(items) == 1 and items[0].caption == "a person speaking Russian"
    wav, rate = decode(items[0])
    assert rate == 16_000 and abs(wav.shape[-1] - 16_000) < 400
    corrupt = SourceFile("a", "a/x", "x", str(tmp_path / "missing.g722"), input_format="g722")
    with pytest.raises(AudioError, match="cannot decode"):
        decode(corrupt)


def test_reserved_evaluation_packages_are_refused(capsys):
    assert is_reserved("asterisk-core-sounds-en-g722") and is_reserved("hedgewars-data")
    assert not is_reserved("asterisk-core-sounds-fr-g722")
    assert not any(is_reserved(name) for name in PACKAGES)
    with pytest.raises(SystemExit):
        main(["--out", "/nonexistent/never-written", "--packages", "hedgewars-data"])
    assert "reserved for independent evaluation" in capsys.readouterr().err
