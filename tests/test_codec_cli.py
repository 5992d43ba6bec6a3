"""``python -m codec``: end-to-end round trips, and one clean error line (never a traceback) for bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import Codec, WaveformCodecConfig
from codec.cli import main


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codec", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def assert_one_error_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    Codec(WaveformCodecConfig.tiny()).save_pretrained(root / "model")
    torch.manual_seed(1)
    Codec(WaveformCodecConfig.tiny()).save_pretrained(root / "other_model")
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 22_050)) / 22_050
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.05 * rng.standard_normal(t.size)], axis=1)
    sf.write(root / "in.wav", stereo.astype(np.float32), 22_050)
    sf.write(root / "in.flac", stereo[:24_000], 48_000)
    sf.write(root / "empty.wav", np.zeros((0, 1), np.float32), 16_000)
    nan = np.zeros(1000, np.float32)
    nan[10] = np.nan
    sf.write(root / "nan.wav", nan, 16_000, subtype="FLOAT")
    sf.write(root / "slow.wav", np.zeros(100, np.float32), 500)  # below the 1 kHz minimum
    (root / "text.wav").write_text("this is not audio\n")
    return {name: root / name for name in ("model", "other_model", "in.wav", "in.flac", "empty.wav", "nan.wav",
                                          "slow.wav", "text.wav")} | {"root": root}


def test_round_trip_through_subprocess(files):
    root, model = files["root"], files["model"]
    code, out, err = finish(run_cli("encode", files["in.wav"], root / "a.grvq", "--model", model))
    assert code == 0, err
    assert "kbps" in out and "Traceback" not in err
    code, out, err = finish(run_cli("decode", root / "a.grvq", root / "a.wav", "--model", model))
    assert code == 0, err
    info = sf.info(root / "a.wav")
    assert (info.samplerate, info.channels) == (16_000, 1)
    assert info.frames == math.ceil(sf.info(files["in.wav"]).frames * 16_000 / 22_050)


def test_error_cases_through_subprocess(files):
    root, model = files["root"], files["model"]
    processes = [
        run_cli("encode", files["text.wav"], root / "x.grvq", "--model", model),
        run_cli("decode", files["in.wav"], root / "x.wav", "--model", model),  # not a stream
    ]
    for process in processes:
        code, _, err = finish(process)
        assert code == 1
        assert_one_error_line(err)


def test_random_init_round_trip(files, capsys):
    """Seeded random weights: encode and decode build the same model, so the fingerprints agree."""
    root = files["root"]
    assert main(["encode", str(files["in.flac"]), str(root / "r.grvq"), "--random-init", "--codebooks", "2"]) == 0
    assert main(["decode", str(root / "r.grvq"), str(root / "r.wav"), "--random-init"]) == 0
    err = capsys.readouterr().err
    assert "untrained random-weight model" in err and "error" not in err
    assert sf.info(root / "r.wav").frames == 24_000 // 3


def test_bitrate_choice_changes_the_stream(files, capsys):
    root, model = files["root"], str(files["model"])
    assert main(["encode", str(files["in.flac"]), str(root / "k2.grvq"), "--model", model, "--codebooks", "2"]) == 0
    assert main(["encode", str(files["in.flac"]), str(root / "k4.grvq"), "--model", model]) == 0
    assert (root / "k2.grvq").stat().st_size < (root / "k4.grvq").stat().st_size
    assert "2 codebooks" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty", "nan", "rate", "codebooks", "model_dir", "corrupt", "other_model",
                                  "bad_extension", "no_model"])
def test_error_cases(files, case, capsys, monkeypatch, tmp_path):
    if case == "no_model":  # as on a checkout without the shipped weights
        monkeypatch.setattr(Codec, "default_pretrained", tmp_path / "not-shipped")
    root, model = files["root"], str(files["model"])
    stream = root / "ok.grvq"
    if not stream.exists():
        assert main(["encode", str(files["in.wav"]), str(stream), "--model", model]) == 0
    corrupt = root / "corrupt.grvq"
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    capsys.readouterr()
    argv = {
        "empty": ["encode", str(files["empty.wav"]), str(root / "x.grvq"), "--model", model],
        "nan": ["encode", str(files["nan.wav"]), str(root / "x.grvq"), "--model", model],
        "rate": ["encode", str(files["slow.wav"]), str(root / "x.grvq"), "--model", model],
        "codebooks": ["encode", str(files["in.wav"]), str(root / "x.grvq"), "--model", model, "--codebooks", "3"],
        "model_dir": ["encode", str(files["in.wav"]), str(root / "x.grvq"), "--model", str(root / "nowhere")],
        "corrupt": ["decode", str(corrupt), str(root / "x.wav"), "--model", model],
        "other_model": ["decode", str(stream), str(root / "x.wav"), "--model", str(files["other_model"])],
        "bad_extension": ["decode", str(stream), str(root / "x.unknown"), "--model", model],
        "no_model": ["encode", str(files["in.wav"]), str(root / "x.grvq")],
    }[case]
    assert main(argv) == 1
    assert_one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv, reason", [(["encode"], "required"),
                                          (["decode", "a", "b", "--device", "abacus"], "unknown device")])
def test_usage_errors_exit_2(capsys, argv, reason):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and reason in err
