"""Small model configs shared by the test files (one place, so no test module imports another)."""

from dataclasses import replace

import torch

from codec import QuantizerConfig, WaveformCodecConfig
from generation import AudioLanguageModel, LMConfig
from vocoder.modules import BackboneConfig

# A two-codebook codec of 16 codes and an LM over it: every generation code path in milliseconds.
TINY_LM = LMConfig(num_codebooks=2, codebook_size=16, dim=32, num_layers=2, num_heads=4, ffn_dim=64,
                   max_seq_len=24, text_dim=32, conditioner="hashed:32")
TINY_CODEC = WaveformCodecConfig(latent_dim=16, encoder_filters=4,
                                 backbone=BackboneConfig(kind="convnext", dim=16, intermediate_dim=32, num_layers=1),
                                 quantizer=QuantizerConfig(groups=2, levels=1, codebook_size=16, kmeans_init=False))


def tiny_lm(seed: int = 0, **overrides) -> AudioLanguageModel:
    torch.manual_seed(seed)
    return AudioLanguageModel(replace(TINY_LM, **overrides)).eval()
