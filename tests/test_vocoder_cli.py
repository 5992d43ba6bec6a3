import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from vocoder.__main__ import main


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vocoder", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def write(path, samples, rate=16000):
    sf.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


def test_copy_synthesis_with_random_init_end_to_end(tmp_path):
    source, target = tmp_path / "in.wav", tmp_path / "out.wav"
    t = np.arange(22050) / 22050
    write(source, np.stack([0.2 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), rate=22050)  # stereo, 22.05 kHz
    result = run_cli(source, target, "--random-init")
    assert result.returncode == 0, result.stderr
    assert "RANDOMLY INITIALISED" in result.stderr
    audio, rate = sf.read(target)
    assert rate == 16000 and audio.ndim == 1 and len(audio) == 16000 // 160 * 160


@pytest.mark.parametrize("case", ["missing", "nan"])
def test_bad_input_end_to_end_gives_one_line_error_without_traceback(tmp_path, case):
    source = tmp_path / "absent.wav" if case == "missing" else write(tmp_path / "in.wav", [np.nan] * 1000)
    result = run_cli(source, tmp_path / "out.wav", "--random-init")
    assert result.returncode != 0
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["not_audio", "empty", "bad_rate", "too_short", "bad_extension",
                                  "missing_folder", "no_model"])
def test_bad_input_returns_non_zero_with_one_error_line(tmp_path, capsys, case):
    source, target, extra = tmp_path / "in.wav", tmp_path / "out.wav", ["--random-init"]
    write(source, np.zeros(1600))
    if case == "not_audio":
        source.write_text("not audio")
    elif case == "empty":
        write(source, [])
    elif case == "bad_rate":
        write(source, np.zeros(1000), rate=500)
    elif case == "too_short":
        write(source, np.zeros(50))
    elif case == "bad_extension":
        target = tmp_path / "out.unknown"
    elif case == "missing_folder":
        target = tmp_path / "absent" / "out.wav"
    elif case == "no_model":
        extra = ["--model", str(tmp_path)]
    assert main([str(source), str(target), *extra]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert not target.exists()
