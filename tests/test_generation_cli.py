"""``python -m generation``: writes audio, and bad input is one line on stderr with a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codec import Codec
from generation import AudioGen, AudioLanguageModel
from generation.cli import main
from vocoder.audio import load_audio, save_audio

from presets import TINY_CODEC, TINY_LM

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC)).save_pretrained(tmp_path_factory.mktemp("gen") / "model")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "generation", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_writes_audio(model_dir, tmp_path):
    out = tmp_path / "dog.wav"
    result = run_cli("a dog barking", "-o", str(out), "--model", str(model_dir), "--duration", "0.3", "--seed", "1",
                     "--top-k", "5", "--top-p", "0.9", "--temperature", "0.8", "--cfg", "2")
    assert result.returncode == 0, result.stderr
    wav, rate = load_audio(out)
    assert rate == 16000 and wav.shape == (1, 15 * 320)
    # Written at the corpus level (-20 dBFS RMS) unless the peak would pass 0.95; --raw-level keeps the decoder's.
    level = 20 * torch.log10(wav.pow(2).mean().sqrt())
    assert abs(float(level) + 20) < 0.1 or float(wav.abs().max()) > 0.94
    raw = tmp_path / "raw.wav"
    assert run_cli("a dog barking", "-o", str(raw), "--model", str(model_dir), "--duration", "0.3", "--seed", "1",
                   "--top-k", "5", "--top-p", "0.9", "--temperature", "0.8", "--cfg", "2", "--raw-level").returncode == 0
    raw_wav = load_audio(raw)[0]
    assert torch.allclose(wav / wav.abs().max(), raw_wav / raw_wav.abs().max(), atol=2e-3)  # the same audio, rescaled


def test_cli_bad_input_is_one_line_without_traceback(model_dir, tmp_path):
    result = run_cli("   ", "-o", str(tmp_path / "x.wav"), "--model", str(model_dir))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "non-empty string" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--duration", "-2"], "duration"),
    (["--top-p", "2"], "top_p"),
    (["--model", "/nonexistent/model"], "no AudioGen model"),
    (["--prompt", "/nonexistent.wav"], "no such audio file"),
])
def test_cli_errors(model_dir, tmp_path, capsys, args, message):
    model = [] if "--model" in args else ["--model", str(model_dir)]
    assert main(["rain", "-o", str(tmp_path / "x.wav"), *model, *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
    assert not (tmp_path / "x.wav").exists()


def test_cli_argument_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rain", "-o", str(tmp_path / "x.wav"), "--duration", "abc"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid float value" in err and err.strip().count("\n") == 0


def test_cli_continuation_and_random_init(model_dir, tmp_path, capsys):
    prompt = tmp_path / "prompt.wav"
    save_audio(prompt, torch.randn(1, 1600) * 0.1, 16000)
    assert main(["birds", "-o", str(tmp_path / "cont.wav"), "--model", str(model_dir), "--prompt", str(prompt),
                 "--duration", "0.2", "--seed", "0"]) == 0
    assert load_audio(tmp_path / "cont.wav")[0].shape == (1, 10 * 320)
    assert main(["noise", "-o", str(tmp_path / "random.wav"), "--random-init", "--duration", "0.1", "--seed", "0"]) == 0
    assert (tmp_path / "random.wav").is_file()

