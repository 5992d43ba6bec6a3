"""The codecs' generator losses, each defined once: one class per design.

Training recipes build ``CodecLoss.for_config(config, weights)`` and call it on the output of
``codec(target)`` and the target waveform; they never re-assemble terms. The discriminator side
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

from .config import CodecConfig, SpectralCodecConfig, WaveformCodecConfig
from .model import SpectralCodecOutput, WaveformCodecOutput


class CodecLoss(nn.Module):
    """A codec's generator loss; :meth:`for_config` gives the one of a design. Called as
    ``loss(output, target, discriminators)`` on the output of ``codec(target)``, it returns the total
    and each weighted term (:class:`~vocoder.losses.LossOutput`)."""

    def __init__(self, weights: Optional[LossWeights] = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()

    @staticmethod
    def for_config(config: CodecConfig, weights: Optional[LossWeights] = None) -> "CodecLoss":
        if isinstance(config, SpectralCodecConfig):
            return SpectralCodecLoss(weights)
        return WaveformCodecLoss(config, weights)


class SpectralCodecLoss(CodecLoss):
    """The spectral codec's loss: L1 between the decoded and the input log-mel (``weights.mel``),
    optionally spectral convergence on the linear mel (``weights.linear_mel``), and the quantizer's
    commitment loss. Its vocoder is trained on its own; there is no waveform, so no discriminators."""

    def forward(self, output: SpectralCodecOutput, target: torch.Tensor,
                discriminators: Optional[Discriminators] = None) -> LossOutput:
        if discriminators is not None:
            raise ValueError("the spectral codec trains on mel frames: there is no waveform for discriminators")
        w = self.weights
        weighted = {"mel": w.mel * (output.mel - output.target_mel).abs().mean(),
                    "quantizer": w.quantizer * output.quantizer_loss}
        if w.linear_mel:
            weighted["linear_mel"] = w.linear_mel * spectral_convergence(output.mel.exp(), output.target_mel.exp())
        return LossOutput.detached(sum(weighted.values()), weighted)


class WaveformCodecLoss(CodecLoss):
    """The waveform codec's loss: multi-scale mel L1, frame-level spectrum terms (frame decoder only),
    LSGAN adversarial + feature matching (when ``discriminators`` are passed) and the quantizer's
    commitment loss, weighted by :class:`~vocoder.losses.LossWeights`.

    Leaving out the discriminators gives the cheap reconstruction-only loss that early training
    steps on a CPU should use.
    """

    def __init__(self, config: WaveformCodecConfig, weights: Optional[LossWeights] = None) -> None:
        super().__init__(weights)
        self.config = config
        # Default resolutions: HiFi-Codec's three mel terms (n_fft 1024, 512, 256).
        self.mel_loss = MultiScaleMelLoss(config.sample_rate)

    def forward(self, output: WaveformCodecOutput, target: torch.Tensor,
                discriminators: Optional[Discriminators] = None) -> LossOutput:
        """``target`` is the input waveform ``[B, 1, T]``. The terms are each weighted contribution to
        the total: ``mel`` and ``quantizer`` always, ``spectrum`` (the APNet terms together) with the
        frame decoder, and ``adversarial`` / ``feature_matching`` when discriminators were given."""
        c, w = self.config, self.weights
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
        return LossOutput.detached(sum(weighted.values()), weighted)
