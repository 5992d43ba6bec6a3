"""Regression tests for the second hardening pass: PCM input, codec fingerprints, the recipes'
dead-code threshold, continuation prompts, output loudness and decode errors."""

import numpy as np
import torch

from codec import CodecConfig
from codec.config import QuantizerConfig
from recipes.config import CONFIG_DIR, load_recipe_config
from vocoder.audio import as_batch
from vocoder.checkpoint import config_from_dict


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
