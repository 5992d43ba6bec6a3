"""Regression tests for the hardening issue: odd rates, array layouts, bad values, paths that would
destroy input, non-finite output, numpy inputs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec import Codec, WaveformCodecConfig
from generation import AudioGen
from recipes.config import RecipeConfigError, load_recipe_config
from vocoder import AudioError, Vocoder, VocoderConfig, load_audio, prepare_waveform
from vocoder.audio import as_batch
from vocoder.cli import write_atomically
from vocoder.modules import BackboneConfig

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------- rates


def test_any_rate_converts_quickly_in_bounded_memory():
    script = """
import json, resource, time, torch
from vocoder.audio import prepare_waveform
prepare_waveform(torch.zeros(1, 1000), 1000, 16000)  # warm up the imports
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = {}
for rate in (1000, 7919, 22049, 44101, 100003, 383999, 767999):
    start = time.perf_counter()
    out = prepare_waveform(torch.randn(rate) * 0.1, rate, 16000)
    assert out.shape == (1, 1, 16000), out.shape
    times[rate] = time.perf_counter() - start
print(json.dumps({"seconds": times, "mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""
    proc = run("-c", script)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert max(result["seconds"].values()) < 1.0, result
    assert result["mb"] < 200, result


@pytest.mark.parametrize("rate", [999, 768_001])
def test_absurd_rates_are_rejected(rate):
    with pytest.raises(AudioError, match="sample rate"):
        prepare_waveform(np.zeros(2000, dtype=np.float32), rate, 16_000)


def test_common_rates_keep_a_sine_intact():
    for rate in (8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000):
        t = torch.arange(rate) / rate
        out = prepare_waveform(torch.sin(2 * math.pi * 440 * t), rate, 16_000)[0, 0]
        ref = torch.sin(2 * math.pi * 440 * torch.arange(16_000) / 16_000)
        assert float((out[400:-400] - ref[400:-400]).abs().max()) < 0.01, rate


# --------------------------------------------------------------------------------------- layouts


def test_soundfile_layouts_are_read_correctly(tmp_path):
    t = np.arange(16_000) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(tmp_path / "eight.wav", np.stack([tone] * 8, axis=1), 16_000)
    sf.write(tmp_path / "mono.wav", tone, 16_000)
    eight, _ = sf.read(tmp_path / "eight.wav", dtype="float32")  # [T, 8]
    mono_2d, _ = sf.read(tmp_path / "mono.wav", dtype="float32", always_2d=True)  # [T, 1]
    for data in (eight, mono_2d, eight.T):
        batch = as_batch(data)
        assert batch.shape[-1] == 16_000 and batch.shape[1] in (1, 8)
        assert torch.allclose(batch.mean(1)[0], torch.from_numpy(tone), atol=1e-4)
    codec = Codec(WaveformCodecConfig.tiny())
    assert codec.encode(eight, 16_000).shape[-1] == 50  # 1 s at 50 frames/s, not one frame


def test_ambiguous_and_impossible_layouts_are_rejected():
    with pytest.raises(AudioError, match="ambiguous"):
        as_batch(np.zeros((100, 100), dtype=np.float32))
    with pytest.raises(AudioError, match="channels"):
        as_batch(np.zeros((100, 200), dtype=np.float32))


# --------------------------------------------------------------------------------- recipe config


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1e-3", "lrr"), ("data.batchsize=1", "batchsize"), ("optm.lr=1e-3", "optm"),
    ("optim.lr=abc", "optim.lr"), ("data.batch_size=0", "batch_size"), ("optim.lr=-1", "optim.lr"),
    ("trainer.max_step=1", "max_step"), ("export.half=maybe", "export.half"),
])
def test_recipe_config_errors(override, message):
    with pytest.raises(RecipeConfigError, match=message):
        load_recipe_config("codec", overrides=[override])


def test_recipe_config_defaults_live_in_one_place():
    config = load_recipe_config("lm")
    assert config["optim"]["lr"] == 5e-4 and config["data"]["batch_size"] == 16
    assert load_recipe_config("vocoder")["trainer"]["checkpoint_every_n_steps"] == 500


# ---------------------------------------------------------------------------------- paths and CLIs


@pytest.fixture()
def speech_file(tmp_path) -> Path:
    path = tmp_path / "a.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16_000)
    return path


@pytest.mark.parametrize("command", [["codec", "encode"], ["vocoder"]])
def test_same_input_and_output_is_refused_and_the_input_kept(speech_file, command):
    before = speech_file.read_bytes()
    proc = run("-m", *command, str(speech_file), str(speech_file), "--random-init")
    assert proc.returncode == 1 and "is the input" in proc.stderr and "Traceback" not in proc.stderr
    assert speech_file.read_bytes() == before


def test_directory_output_and_bad_extension_fail_before_any_model(speech_file, tmp_path):
    proc = run("-m", "vocoder", str(speech_file), str(tmp_path), "--random-init")
    assert proc.returncode == 1 and "is a directory" in proc.stderr
    proc = run("-m", "vocoder", str(speech_file), str(tmp_path / "g.xyz"), "--random-init")
    assert proc.returncode == 1 and "extension" in proc.stderr
    proc = run("-m", "vocoder", str(tmp_path), str(tmp_path / "out.wav"), "--random-init")
    assert proc.returncode == 1 and "is a directory" in proc.stderr


def test_cuda_without_a_gpu_is_a_one_line_error(speech_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run("-m", "vocoder", str(speech_file), str(tmp_path / "o.wav"), "--device", "cuda")
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.wav"
    target.write_bytes(b"old")

    def failing(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomically(target, failing)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
    write_atomically(target, lambda path: path.write_bytes(b"new"))
    assert target.read_bytes() == b"new"


def test_directory_input_is_named_as_such(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


# ------------------------------------------------------------------------------ values and numpy


@pytest.fixture(scope="module")
def vocoder():
    torch.manual_seed(0)
    return Vocoder(VocoderConfig(backbone=BackboneConfig(dim=16, intermediate_dim=32, num_layers=1))).eval()


def test_mels_far_outside_the_log_mel_range_are_rejected(vocoder):
    mel = vocoder.mel(torch.randn(3200) * 0.1, 16_000)
    with pytest.raises(ValueError, match="outside the range"):
        vocoder.decode(mel + 100)
    with pytest.raises(ValueError, match="NaN"):
        vocoder.decode(mel * float("nan"))


def test_non_finite_vocoder_output_is_an_error(vocoder):
    broken = Vocoder(vocoder.config)
    broken.load_state_dict(vocoder.state_dict())
    with torch.no_grad():
        broken.head.phase.real.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        broken.decode(broken.mel(torch.randn(3200) * 0.1, 16_000), refine=0)


def test_numpy_inputs_are_accepted(vocoder):
    mel = vocoder.mel(torch.randn(3200) * 0.1, 16_000)
    assert torch.equal(vocoder.decode(mel.numpy(), refine=0), vocoder.decode(mel, refine=0))
    with pytest.raises(ValueError, match="floating-point"):
        vocoder.decode(np.zeros((80, 4), dtype=np.int64))
    gen = AudioGen.random_init(codec_config=WaveformCodecConfig.tiny())
    prompt = np.zeros((1, gen.codec.num_codebooks, 5), dtype=np.int64)
    tokens = gen.generate_continuation_tokens(prompt, ["a bell"], duration=np.float32(0.2), seed=0)
    assert tokens.shape[-1] == 10 and torch.equal(tokens[..., :5], torch.zeros(1, gen.codec.num_codebooks, 5).long())
