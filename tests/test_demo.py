"""The demo's handlers, called directly (no browser): outputs, limits and readable errors."""

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
import torch

import generation.audiogen
from codec import Codec
from demo import DemoHandlers, DemoLimits, DemoModels, Workspace, build_app, load_models
from vocoder.audio import load_audio
from vocoder.checkpoint import CheckpointError

LIMITS = DemoLimits(max_upload_seconds=3.0, max_prompt_seconds=2.0, max_generation_seconds=3.0, max_upload_mb=1.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and the CI machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> DemoModels:
    return DemoModels.random(seed=0, device="cpu")


@pytest.fixture(scope="module")
def handlers(models, tmp_path_factory) -> DemoHandlers:
    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    return DemoHandlers(models, LIMITS, workspace)


def write_wav(path: Path, seconds: float, sample_rate: int = 22_050, channels: int = 2,
              subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), np.stack([tone] * channels, axis=-1), sample_rate, subtype=subtype)
    return path


def inside(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def seconds_of(path: str) -> float:
    wav, sample_rate = load_audio(path)
    return wav.shape[-1] / sample_rate


def test_generate_returns_requested_duration_and_the_seed_used(handlers):
    result = handlers.generate("a dog barking", duration=1.5, random_seed=True)
    assert seconds_of(result.audio) == pytest.approx(1.5, abs=1 / handlers.models.generator.frame_rate)
    assert inside(result.audio, handlers.workspace.outputs)
    assert isinstance(result.seed, int) and str(result.seed) in result.summary
    assert result.spectrogram.dtype == np.uint8 and result.spectrogram.shape[-1] == 3
    assert "untrained" in result.summary


def test_generate_with_a_fixed_seed_is_reproducible(handlers):
    first = handlers.generate("rain on a roof", duration=0.5, seed=7, random_seed=False)
    second = handlers.generate("rain on a roof", duration=0.5, seed=7, random_seed=False)
    assert first.seed == second.seed == 7
    assert torch.equal(load_audio(first.audio)[0], load_audio(second.audio)[0])


def test_stop_ends_a_running_generation(handlers):
    def progress(*args, **kwargs):  # stands in for gr.Progress: press Stop at the first step
        handlers.stop()

    with pytest.raises(gr.Error, match="stopped"):
        handlers.generate("wind", duration=1.0, progress=progress)
    assert handlers.generate("wind", duration=0.5).seed >= 0  # the next request runs normally


def test_continuation_keeps_the_prompt_and_marks_its_end(handlers, tmp_path):
    prompt = write_wav(tmp_path / "prompt.wav", 1.0)
    result = handlers.continue_audio(str(prompt), "", duration=2.0, seed=1, random_seed=False)
    assert seconds_of(result.audio) == pytest.approx(2.0, abs=0.05)
    assert "1.00 s" in result.summary and result.seed == 1
    cyan = np.all(result.spectrogram == (0, 230, 255), axis=-1)  # the marker line
    columns = np.flatnonzero(cyan.any(axis=0))
    assert columns.size and abs(columns.mean() / result.spectrogram.shape[1] - 0.5) < 0.02


def test_continuation_duration_must_exceed_the_prompt(handlers, tmp_path):
    prompt = write_wav(tmp_path / "prompt.wav", 1.0)
    with pytest.raises(gr.Error, match="total duration must be between"):
        handlers.continue_audio(str(prompt), None, duration=1.0)


@pytest.mark.parametrize("num_codebooks", [2, 4])
def test_codec_roundtrip_outputs(handlers, tmp_path, num_codebooks):
    source = write_wav(tmp_path / "music.wav", 1.0, sample_rate=44_100)
    result = handlers.codec_roundtrip(str(source), num_codebooks)
    codec: Codec = handlers.models.codec
    assert inside(result.stream, handlers.workspace.outputs) and result.stream.endswith(".grvq")
    assert inside(result.reconstruction, handlers.workspace.outputs)
    assert seconds_of(result.reconstruction) == pytest.approx(1.0, abs=1e-3)
    stream = Path(result.stream).read_bytes()
    assert codec.decompress(stream)[0].shape[-1] == codec.sample_rate  # a valid stream of this model
    assert f"{codec.bitrate_for(num_codebooks) / 1000:g} kbit/s" in result.summary
    assert f"{len(stream)} bytes" in result.summary or f"{len(stream) / 1000:.1f} kB" in result.summary
    assert result.original_spectrogram.shape == result.reconstruction_spectrogram.shape


def test_more_codebooks_make_a_bigger_stream(handlers, tmp_path):
    source = write_wav(tmp_path / "tone.wav", 1.0)
    small, large = (Path(handlers.codec_roundtrip(str(source), k).stream).stat().st_size for k in (2, 4))
    assert small < large


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "upload or record"),
        (lambda d: (d / "empty.wav").write_bytes(b"") and None or d / "empty.wav", "empty"),
        (lambda d: (d / "notes.wav").write_text("not audio at all") and None or d / "notes.wav", "cannot read"),
        (lambda d: write_wav(d / "long.wav", 3.5, sample_rate=8_000, channels=1), "limit is 3 s"),
        (lambda d: write_wav(d / "click.wav", 0.01), "at least"),
        (lambda d: (d / "big.wav").write_bytes(b"\0" * 1_100_000) and None or d / "big.wav", "limit is 1 MB"),
    ],
    ids=["missing", "empty", "not-audio", "too-long", "too-short", "too-large"],
)
def test_bad_uploads_raise_readable_errors(handlers, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(gr.Error, match=message) as caught:
        handlers.codec_roundtrip(None if path is None else str(path), 4)
    assert str(tmp_path) not in str(caught.value)  # no server-side paths in the page


def test_nan_upload_is_refused(handlers, tmp_path):
    path = tmp_path / "nan.wav"
    samples = np.zeros(8_000, dtype=np.float32)
    samples[100] = np.nan
    sf.write(str(path), samples, 8_000, subtype="FLOAT")
    with pytest.raises(gr.Error, match="NaN"):
        handlers.continue_audio(str(path), None, duration=2.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"text": "   "}, "describe the sound"),
        ({"text": "x" * 301}, "limit is 300"),
        ({"duration": 0.0}, "Duration must be between"),
        ({"duration": 1e9}, "Duration must be between"),
        ({"duration": float("nan")}, "Duration must be a number"),
        ({"cfg_coef": -1.0}, "Guidance scale"),
        ({"temperature": 50.0}, "Temperature"),
        ({"top_k": 1e6}, "Top-k"),
        ({"top_k": 2.5}, "whole number"),
        ({"top_p": 2.0}, "Top-p"),
        ({"seed": -5, "random_seed": False}, "Seed"),
        ({"seed": "abc", "random_seed": False}, "Seed must be a number"),
    ],
)
def test_absurd_generation_settings_raise_readable_errors(handlers, overrides, message):
    settings = {"text": "a bell", "duration": 1.0, **overrides}
    with pytest.raises(gr.Error, match=message):
        handlers.generate(**settings)


@pytest.mark.parametrize("num_codebooks", [3, 99, 0])
def test_codec_rejects_unsupported_codebook_counts(handlers, tmp_path, num_codebooks):
    source = write_wav(tmp_path / "tone.wav", 0.5)
    with pytest.raises(gr.Error, match="Codebooks must be"):
        handlers.codec_roundtrip(str(source), num_codebooks)


def test_build_app_keeps_gradio_files_in_the_workspace(models, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unset")  # restored after the test
    workspace = Workspace(tmp_path / "app")
    app = build_app(models, LIMITS, workspace)
    assert isinstance(app, gr.Blocks)
    assert Path(gr.utils.get_upload_folder()) == workspace.gradio_cache
    assert "untrained, output is noise" in models.describe()


def test_load_models_falls_back_to_random_weights_only_for_missing_shipped_models(tmp_path, monkeypatch):
    monkeypatch.setattr(generation.audiogen, "DEFAULT_PRETRAINED", tmp_path / "no-generator")
    monkeypatch.setattr(Codec, "default_pretrained", tmp_path / "no-codec")
    models = load_models(device="cpu")
    assert not models.generator_trained and not models.codec_trained
    assert "random weights" in models.generator_source
    with pytest.raises(CheckpointError):
        load_models(generator_path=tmp_path / "missing", device="cpu")


def test_generate_says_which_trained_sounds_are_nearest_the_prompt(tmp_path):
    from dataclasses import replace

    from generation.vocabulary import Vocabulary

    models = replace(DemoModels.random(seed=0, device="cpu"), generator_trained=True)  # as a trained model would
    handlers = DemoHandlers(models, LIMITS, Workspace(tmp_path / "workspace"))
    assert "no training vocabulary" in handlers.known_sounds_note("rain")
    models.generator.vocabulary = Vocabulary({"rain falling": 9, "a fire crackling": 7, "swords clashing": 6})
    summary = handlers.generate("rain falling hard", duration=0.5, seed=1, random_seed=False).summary
    assert "Nearest sounds it was trained on" in summary and "*rain falling* (0." in summary
    assert "far from anything" not in summary
    note = handlers.known_sounds_note("a spaceship engine")
    assert "far from anything the model learned" in note and "It still generates" in note
    assert handlers.known_sounds_note("  ") == ""


def test_continuation_examples_are_short_real_recordings():
    from demo.app import EXAMPLE_RECORDINGS
    from demo.handlers import DemoLimits
    from vocoder import load_audio

    assert len(EXAMPLE_RECORDINGS) >= 2
    for path in EXAMPLE_RECORDINGS:
        wav, rate = load_audio(path)
        assert 2.0 <= wav.shape[-1] / rate <= DemoLimits().max_prompt_seconds and wav.abs().max() > 0.05
