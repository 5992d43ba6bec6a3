"""Regression tests for the second hardening pass: PCM input, codec fingerprints, the recipes'
dead-code threshold, default configs that are the shipped models, continuation prompts, output
loudness and decode errors."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import (BitstreamError, Codec, CodecConfig, SpectralCodec, SpectralCodecConfig, WaveformCodecConfig, bitstream,
                   read_saved_codec)
from codec.config import ChunkConfig, QuantizerConfig, codec_config_from_dict
from generation import AudioGen, AudioLanguageModel, SamplingParams
from generation.audiogen import CODEC_REFERENCE, check_codec_reference
from recipes.config import CONFIG_DIR, load_recipe_config
from presets import TINY_CODEC, TINY_LM
from vocoder import Vocoder, VocoderConfig, load_audio
from vocoder.audio import as_batch, prepare_waveform
from vocoder.checkpoint import config_from_dict, config_to_dict, read_config
from vocoder.modules import BackboneConfig

SR = 16_000
EXAMPLES = Path(__file__).parents[1] / "demo" / "examples"


# ------------------------------------------------------------------------------------ PCM input


def test_unsigned_8_bit_pcm_is_centred():
    silence = as_batch(np.full(800, 128, dtype=np.uint8))
    assert silence.abs().max() == 0  # 8-bit silence is the midpoint, not +0.5
    extremes = as_batch(np.array([0, 255, 128], dtype=np.uint8))[0, 0]
    assert extremes[0] == -1.0 and 0.99 < extremes[1] <= 1.0 and extremes[2] == 0
    sine = np.sin(np.linspace(0, 20 * np.pi, 1600))
    from_unsigned = as_batch(np.round(sine * 127 + 128).astype(np.uint8))[0, 0]
    from_signed = as_batch(np.round(sine * 127).astype(np.int8))[0, 0]
    assert abs(float(from_unsigned.mean())) < 1e-2
    assert torch.allclose(from_unsigned, from_signed, atol=1e-2)


def test_integer_pcm_tensors_are_scaled_like_arrays():
    pcm = np.array([0, 128, 255, 64], dtype=np.uint8)
    assert torch.equal(as_batch(torch.from_numpy(pcm)), as_batch(pcm))
    pcm16 = np.array([-32767, 0, 16384], dtype=np.int16)
    assert torch.equal(as_batch(torch.from_numpy(pcm16)), as_batch(pcm16))


# ----------------------------------------------------------------------------- recipe defaults


def test_every_codec_recipe_reseeds_only_entries_almost_never_used():
    # 8 x 1 s batches give a codebook 400 vectors for 1,024 entries: a threshold of 2 re-seeds ~40 % a step.
    assert QuantizerConfig().dead_code_threshold == 0.1
    for recipe in (None, CONFIG_DIR / "codec_spectral.yaml", CONFIG_DIR / "codec_waveform.yaml"):
        model = load_recipe_config("codec", recipe)["model"]
        assert codec_config_from_dict(model).quantizer.dead_code_threshold == 0.1


# ------------------------------------------------------------------ defaults are the shipped models


def architecture(config: CodecConfig) -> dict:
    """``config`` as a dict less :attr:`Codec.training_fields` (settings that only steer training)."""
    arch = config_to_dict(config)
    for dotted in Codec.training_fields:
        *parents, leaf = dotted.split(".")
        node = arch
        for key in parents:
            node = node[key]
        node.pop(leaf)
    return arch


def test_default_configs_are_the_shipped_models():
    design, shipped_codec, legacy = read_saved_codec(Codec.default_pretrained)
    assert design is SpectralCodec and legacy is None  # the flat config.json's unused fields are the defaults
    assert architecture(SpectralCodecConfig()) == architecture(shipped_codec)
    assert SpectralCodecConfig().quantizer.quantize_dropout is False  # as the shipped codec was trained
    assert VocoderConfig() == read_config(VocoderConfig, Vocoder.default_pretrained, "Vocoder")
    assert SpectralCodecConfig().vocoder == VocoderConfig()
    # The recipes' defaults build them too, and the waveform design is one named preset away.
    assert codec_config_from_dict(load_recipe_config("codec")["model"]) == SpectralCodecConfig()
    assert config_from_dict(VocoderConfig, load_recipe_config("vocoder")["model"]) == VocoderConfig()
    waveform = codec_config_from_dict(load_recipe_config("codec", CONFIG_DIR / "codec_waveform.yaml")["model"])
    assert waveform == WaveformCodecConfig() and waveform.quantizer.quantize_dropout
    # codec_spectral.yaml, which users' commands name, is the default but for its output folder.
    named = load_recipe_config("codec", CONFIG_DIR / "codec_spectral.yaml")
    assert {**named, "output": None} == {**load_recipe_config("codec"), "output": None}


@pytest.mark.parametrize("kind", ["spectral", "waveform"])
def test_the_smoke_recipe_is_tiny_for_both_designs(kind):
    extra = CONFIG_DIR / "codec_waveform.yaml" if kind == "waveform" else None
    config = codec_config_from_dict(load_recipe_config("codec", extra, smoke=True)["model"])
    assert config.kind == kind
    assert sum(p.numel() for p in Codec(config).parameters()) < 300_000


# -------------------------------------------------------------------------------- fingerprints


def copy_of(model: Codec, config: CodecConfig) -> Codec:
    """A codec built from ``config`` with ``model``'s weights (a warm start that changed settings)."""
    twin = Codec(config)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@pytest.fixture(scope="module")
def spectral() -> Codec:
    torch.manual_seed(0)
    return Codec(SpectralCodecConfig.tiny()).eval()


def test_training_only_settings_and_the_vocoder_leave_the_fingerprint_alone(spectral):
    quantizer = replace(spectral.config.quantizer, dead_code_threshold=2.0, commitment_weight=1.0,
                        ema_decay=0.9, quantize_dropout=False, kmeans_iters=3)
    tuned = copy_of(spectral, replace(spectral.config, quantizer=quantizer, chunking=ChunkConfig(frames=7)))
    assert tuned.fingerprint() == spectral.fingerprint()
    vocoder_config = replace(spectral.config.vocoder, backbone=BackboneConfig(kind="convnext", dim=16,
                                                                              intermediate_dim=32, num_layers=1))
    tuned.load_vocoder(Vocoder(vocoder_config))
    assert tuned.fingerprint() == spectral.fingerprint()


def test_what_makes_the_codes_changes_the_fingerprint(spectral):
    mel = replace(spectral.config.vocoder.mel, f_min=50.0)
    other_mel = Codec(replace(spectral.config, vocoder=replace(spectral.config.vocoder, mel=mel)))
    other_mel.load_state_dict(spectral.state_dict())
    assert other_mel.fingerprint() != spectral.fingerprint()
    torch.manual_seed(1)
    assert Codec(spectral.config).fingerprint() != spectral.fingerprint()  # other codebooks


def earlier_fingerprint(model: Codec) -> bytes:
    """The fingerprint's earlier form: the whole config less chunking, then the codebooks."""
    arch = model.flat_config()
    arch.pop("chunking")
    return model._digest(arch)


def test_streams_stamped_with_the_earlier_fingerprint_still_decode(spectral):
    wav = torch.randn(1, SR // 2) * 0.1
    header, codes = bitstream.unpack(spectral.compress(wav, SR))
    assert header.fingerprint != earlier_fingerprint(spectral)
    old_stream = bitstream.pack(replace(header, fingerprint=earlier_fingerprint(spectral)), codes)
    audio, _ = spectral.decompress(old_stream, refine=0)
    assert torch.equal(audio, spectral.decompress(spectral.compress(wav, SR), refine=0)[0])
    with pytest.raises(BitstreamError, match="fingerprint"):
        spectral.decompress(bitstream.pack(replace(header, fingerprint=bytes(8)), codes))


@pytest.fixture(scope="module")
def shipped() -> AudioGen:
    return AudioGen.from_pretrained()


def test_shipped_codec_fingerprint_and_its_lm_reference(shipped, tmp_path):
    codec = Codec.from_pretrained()
    assert codec.fingerprint().hex() == "e5449910126a81d0"  # changing it orphans users' streams and LMs
    assert earlier_fingerprint(codec).hex() == "bd5c92a2a4b65945"  # what existing files carry
    assert codec.matches_fingerprint(bytes.fromhex("bd5c92a2a4b65945"))
    assert shipped.codec.fingerprint() == codec.fingerprint()
    old_reference = tmp_path / CODEC_REFERENCE  # an LM exported before the fingerprint's form changed
    old_reference.write_text(json.dumps({"codec_fingerprint": "bd5c92a2a4b65945"}))
    check_codec_reference(old_reference, codec)


# -------------------------------------------------------------------------------- continuation


def test_a_continuation_prompt_is_cut_to_whole_frames():
    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    hop = gen.codec.hop_length
    prompts = []
    gen.generate_continuation_tokens = lambda tokens, *args, **kwargs: prompts.append(tokens) or tokens
    wav = torch.randn(1, 3 * hop + hop // 2) * 0.1
    gen.generate_continuation(wav, SR, duration=0.2, seed=0)
    assert prompts[0].shape[-1] == 3  # the half frame at the end is dropped, not padded with zeros
    assert torch.equal(prompts[0], gen.codec.encode(wav[..., :3 * hop], SR))
    with pytest.raises(ValueError, match="at least one codec frame"):
        gen.generate_continuation(wav[..., :hop - 1], SR, duration=0.2)


def test_a_continuation_prompt_does_not_end_in_a_fade(shipped, monkeypatch):
    """Steady noises, each prompt ending half-way into a frame: the prompt the LM continues (here
    decoded as it is, with no generation) keeps its level to its last frame; with a last frame over
    zero padding that frame was 6-11 dB quieter, a fade the LM then followed."""
    monkeypatch.setattr(shipped, "generate_continuation_tokens", lambda tokens, *args, **kwargs: tokens)
    hop, frames = shipped.codec.hop_length, 25
    level = lambda part: 10 * torch.log10(part.pow(2).mean())
    for name in ("river_0ad.flac", "fire_0ad.flac"):
        wav, rate = load_audio(EXAMPLES / name)
        prompt = prepare_waveform(wav, rate, SR)[..., :frames * hop + hop // 2]
        out = shipped.generate_continuation(prompt, SR, duration=1.0)[0, 0]
        dip = level(out[-10 * hop:-hop]) - level(out[-hop:])
        assert dip < 4.0, f"{name}: the prompt's last frame is {float(dip):.1f} dB below the frames before it"
        assert out.shape[-1] == frames * hop


# ------------------------------------------------------------------------------------- loudness


def rms_db(wav: torch.Tensor) -> float:
    return float(20 * torch.log10(wav.pow(2).mean().sqrt()))


def at_level(wav: torch.Tensor, target_db: float) -> bool:
    """At ``target_db`` dBFS RMS, or lower with its peak at 0.95."""
    return abs(rms_db(wav) - target_db) < 0.05 or (rms_db(wav) < target_db and abs(float(wav.abs().max()) - 0.95) < 1e-3)


def test_library_cli_and_demo_return_the_same_level(tmp_path):
    from demo import DemoHandlers, DemoLimits, DemoModels, Workspace
    from generation.cli import main

    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    batch = gen.generate(["wind", "a bell"], duration=0.5, seed=3)
    assert all(at_level(item, -20.0) for item in batch)  # each item on its own
    raw = gen.codec.decode(gen.generate_tokens(["wind", "a bell"], duration=0.5, seed=3))
    assert torch.equal(gen.generate(["wind", "a bell"], duration=0.5, seed=3, target_db=None), raw)
    assert at_level(gen.generate(["wind"], duration=0.5, seed=3, target_db=-30.0)[0], -30.0)
    assert at_level(gen.generate_continuation(raw[:1], SR, duration=0.8, seed=3)[0], -20.0)
    with pytest.raises(ValueError, match="target_db"):
        gen.generate(["wind"], duration=0.5, target_db=float("nan"))

    assert main(["wind", "-o", str(tmp_path / "cli.wav"), "--model", str(gen.save_pretrained(tmp_path / "gen")),
                 "--duration", "0.5", "--seed", "3", "--top-k", "5"]) == 0
    models = DemoModels(gen, gen.codec, "test", "test", generator_trained=False, codec_trained=False)
    demo = DemoHandlers(models, DemoLimits(), Workspace(tmp_path / "demo"))
    shown = demo.generate("wind", duration=0.5, top_k=5, seed=3, random_seed=False).audio
    library = gen.generate(["wind"], duration=0.5, seed=3, sampling=SamplingParams(top_k=5))  # 16-entry codebooks
    for written in (tmp_path / "cli.wav", shown):
        torch.testing.assert_close(load_audio(written)[0], library[0], atol=2e-4, rtol=0)  # 16-bit files


# ------------------------------------------------------------------------------ decode errors


@pytest.mark.parametrize("bias, what", [(30.0, "outside"), (float("nan"), "NaN")])
def test_a_failed_codec_decode_speaks_of_codes_not_of_mels(bias, what):
    torch.manual_seed(0)
    codec = Codec(SpectralCodecConfig.tiny()).eval()
    codes = torch.zeros(1, 4, 3, dtype=torch.long)
    with torch.no_grad():
        codec.decoder.project.bias.fill_(bias)  # damaged weights: the decoded mel is out of range or NaN
    for decode in (lambda: codec.decode(codes), lambda: codec.decompress(codec.compress(torch.zeros(SR), SR))):
        with pytest.raises(ValueError, match=what) as error:
            decode()
        message = str(error.value)
        assert "codes" in message and "damaged" in message, message
        assert "dB or log10" not in message and "Vocoder.mel" not in message, message


def test_a_failed_waveform_codec_decode_speaks_of_codes():
    codec = Codec(WaveformCodecConfig.tiny()).eval()
    with torch.no_grad():
        for parameter in codec.decoder.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(ValueError, match="decoding these codes gave NaN"):
        codec.decode(torch.zeros(1, 4, 3, dtype=torch.long))
