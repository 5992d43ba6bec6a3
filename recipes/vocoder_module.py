"""Vocoder recipe: the APNet-style mel vocoder trained against the shared discriminators.

Config sections: ``model`` (:class:`~vocoder.VocoderConfig` fields), ``loss``
(:class:`~vocoder.losses.LossWeights`), ``discriminators``, ``data``, ``optim``, ``trainer``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from vocoder import Vocoder, VocoderConfig
from vocoder.checkpoint import config_from_dict
from vocoder.training import VocoderLoss

from .audio_module import AudioGanModule


class VocoderModule(AudioGanModule):
    """Lightning module training a :class:`~vocoder.Vocoder`."""

    def __init__(self, config: Dict[str, Any]) -> None:
        vocoder_config = config_from_dict(VocoderConfig, config["model"], "model")
        super().__init__(config, Vocoder(vocoder_config), vocoder_config.mel.sample_rate)
        self.loss = VocoderLoss(vocoder_config, self.weights, self.discriminators)

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        with torch.no_grad():
            mel = self.generator.frontend(audio)
        prediction = self.generator(mel)
        result = self.loss(prediction, audio, adversarial=adversarial)
        return prediction.waveform[..., : audio.shape[-1]], result.total, result.terms

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(self.generator.frontend(audio))
