"""The vocoder's generator loss, defined once: spectral (APNet), multi-scale mel and adversarial terms.

Training recipes build a :class:`VocoderLoss` and call it on the model's
:class:`~vocoder.modules.SpectrumPrediction` and the target waveform; they never re-assemble terms.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .discriminators import Discriminators
from .losses import (
    DEFAULT_MEL_SCALES,
    LossOutput,
    LossWeights,
    MultiScaleMelLoss,
    adversarial_discriminator_loss,
    adversarial_generator_losses,
    spectrum_losses,
    weighted_spectrum_loss,
)
from .model import VocoderConfig
from .modules import SpectrumPrediction


class VocoderLoss(nn.Module):
    """Generator loss of the vocoder.

    Spectral terms (amplitude MSE, three anti-wrapped phase losses, STFT consistency, real/imag L1)
    at the synthesis STFT, multi-scale log-mel L1, and, when ``discriminators`` are given and
    ``adversarial=True`` is passed, the LSGAN adversarial and feature-matching terms.
    """

    def __init__(self, config: VocoderConfig, weights: Optional[LossWeights] = None,
                 discriminators: Optional[Discriminators] = None,
                 mel_scales: Sequence[Tuple[int, int, int]] = DEFAULT_MEL_SCALES) -> None:
        super().__init__()
        self.config = config
        self.weights = weights or LossWeights()
        self.discriminators = discriminators
        self.mel_loss = MultiScaleMelLoss(config.mel.sample_rate, mel_scales)

    def forward(self, prediction: SpectrumPrediction, target: torch.Tensor,
                adversarial: bool = True) -> LossOutput:
        """``prediction`` from ``Vocoder.forward`` on the mel of ``target`` (waveform ``[B, 1, T]``):
        the weighted total and every term unweighted."""
        c, w = self.config, self.weights
        generated = prediction.waveform
        if target.dim() == 2:
            target = target[:, None]
        length = min(generated.shape[-1], target.shape[-1])
        generated, target = generated[..., :length], target[..., :length]

        terms = spectrum_losses(prediction, target, c.n_fft, c.hop_length, c.win_length,
                                w.phase_kind, w.phase_weighting)
        terms["mel"] = self.mel_loss(generated, target)
        total = weighted_spectrum_loss(terms, w) + w.mel * terms["mel"]
        if adversarial and self.discriminators is not None:
            terms["adversarial"], terms["feature_matching"] = adversarial_generator_losses(
                self.discriminators, generated, target)
            total = total + w.adversarial * terms["adversarial"] + w.feature_matching * terms["feature_matching"]
        return LossOutput.detached(total, terms)

    def discriminator_loss(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LSGAN loss of the discriminators (``generated`` is detached inside)."""
        if self.discriminators is None:
            raise ValueError("this VocoderLoss has no discriminators")
        length = min(generated.shape[-1], target.shape[-1])
        return adversarial_discriminator_loss(self.discriminators, generated[..., :length], target[..., :length])
