"""The codec's generator loss, defined once.

Training recipes build a :class:`CodecLoss` and call it on the :class:`~codec.CodecOutput` of
``Codec.forward`` and the target waveform; they never re-assemble terms. The discriminator side
is :func:`vocoder.losses.adversarial_discriminator_loss`, shared with the vocoder.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vocoder.discriminators import Discriminators
from vocoder.losses import (
    LossOutput,
    LossWeights,
    MultiScaleMelLoss,
    adversarial_generator_losses,
    spectral_convergence,
    spectrum_losses,
    weighted_spectrum_loss,
)

from .config import CodecConfig
from .model import CodecOutput


class CodecLoss(nn.Module):
    """Generator loss: multi-scale mel L1, frame-level spectrum terms (frame decoder only), LSGAN
    adversarial + feature matching (when ``discriminators`` are passed) and the quantizer's
    commitment loss, weighted by :class:`~vocoder.losses.LossWeights`.

    Leaving out the discriminators gives the cheap reconstruction-only loss that early training
    steps on a CPU should use.
    """

    def __init__(self, config: CodecConfig, weights: Optional[LossWeights] = None) -> None:
        super().__init__()
        self.config = config
        self.weights = weights or LossWeights()
        # Default resolutions: HiFi-Codec's three mel terms (n_fft 1024, 512, 256).
        self.mel_loss = MultiScaleMelLoss(config.sample_rate)

    def forward(self, output: CodecOutput, target: torch.Tensor,
                discriminators: Optional[Discriminators] = None) -> LossOutput:
        """``output`` of ``Codec.forward(target)``; ``target`` is the input waveform ``[B, 1, T]``.
        For the spectral codec the loss compares ``output.mel`` with ``output.target_mel`` (the
        mel L1 weighted by ``weights.mel``) and takes no discriminators.

        The terms are each weighted contribution to the total: ``mel`` and ``quantizer`` always,
        ``linear_mel`` when weighted (spectral codec), ``spectrum`` (the APNet terms together) with
        the frame decoder, and ``adversarial`` / ``feature_matching`` when discriminators were given."""
        c, w = self.config, self.weights
        if output.mel is not None:
            # Spectral codec: L1 on log-mel frames (its vocoder is trained on its own).
            weighted = {"mel": w.mel * (output.mel - output.target_mel).abs().mean(),
                        "quantizer": w.quantizer * output.quantizer_loss}
            if w.linear_mel:
                weighted["linear_mel"] = w.linear_mel * spectral_convergence(output.mel.exp(), output.target_mel.exp())
            total = sum(weighted.values())
            return LossOutput.detached(total, weighted)
        generated = output.audio
        if generated.shape != target.shape:
            raise ValueError(f"generated audio {tuple(generated.shape)} and target {tuple(target.shape)} differ in shape")
        weighted = {
            "mel": w.mel * self.mel_loss(generated, target),
            "quantizer": w.quantizer * output.quantizer_loss,
        }
        if output.spectrum is not None:
            terms = spectrum_losses(output.spectrum, target, c.n_fft, c.hop_length, c.win_length,
                                   w.phase_kind, w.phase_weighting)
            weighted["spectrum"] = weighted_spectrum_loss(terms, w)
        if discriminators is not None:
            adversarial, feature_matching = adversarial_generator_losses(discriminators, generated, target)
            weighted["adversarial"] = w.adversarial * adversarial
            weighted["feature_matching"] = w.feature_matching * feature_matching
        total = sum(weighted.values())
        return LossOutput.detached(total, weighted)
