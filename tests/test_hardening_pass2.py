"""Regression tests for the second hardening pass: PCM input, codec fingerprints, the recipes'
dead-code threshold, continuation prompts, output loudness and decode errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from codec import BitstreamError, Codec, CodecConfig, bitstream
from codec.config import ChunkConfig, QuantizerConfig
from generation import AudioGen
from generation.audiogen import CODEC_REFERENCE, check_codec_reference
from recipes.config import CONFIG_DIR, load_recipe_config
from vocoder import Vocoder
from vocoder.audio import as_batch
from vocoder.checkpoint import config_from_dict, config_to_dict
from vocoder.modules import BackboneConfig

SR = 16_000


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
    for recipe in (None, CONFIG_DIR / "codec_spectral.yaml"):
        model = load_recipe_config("codec", recipe)["model"]
        assert config_from_dict(CodecConfig, model).quantizer.dead_code_threshold == 0.1


# -------------------------------------------------------------------------------- fingerprints


def copy_of(model: Codec, config: CodecConfig) -> Codec:
    """A codec built from ``config`` with ``model``'s weights (a warm start that changed settings)."""
    twin = Codec(config)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@pytest.fixture(scope="module")
def spectral() -> Codec:
    torch.manual_seed(0)
    return Codec(CodecConfig.tiny(kind="spectral")).eval()


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
    arch = config_to_dict(model.config)
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


def test_shipped_codec_fingerprint_and_its_lm_reference(tmp_path):
    codec = Codec.from_pretrained()
    assert codec.fingerprint().hex() == "e5449910126a81d0"  # changing it orphans users' streams and LMs
    assert earlier_fingerprint(codec).hex() == "bd5c92a2a4b65945"  # what existing files carry
    assert codec.matches_fingerprint(bytes.fromhex("bd5c92a2a4b65945"))
    assert AudioGen.from_pretrained().codec.fingerprint() == codec.fingerprint()
    old_reference = tmp_path / CODEC_REFERENCE  # an LM exported before the fingerprint's form changed
    old_reference.write_text(json.dumps({"codec_fingerprint": "bd5c92a2a4b65945"}))
    check_codec_reference(old_reference, codec)
