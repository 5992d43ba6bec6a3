"""Codec recipe: GRVQ codec trained end to end against the shared discriminators.

Config sections: ``model`` (:class:`~codec.CodecConfig` fields), ``loss``
(:class:`~vocoder.losses.LossWeights`), ``discriminators``, ``data``, ``optim``, ``trainer``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch

from codec import Codec, CodecConfig
from codec.training import CodecLoss
from vocoder.checkpoint import config_from_dict

from .audio_module import AudioGanModule


class CodecModule(AudioGanModule):
    """Lightning module training a :class:`~codec.Codec`."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__(config)
        codec_config = config_from_dict(CodecConfig, config.get("model", {}), "model")
        self.generator = Codec(codec_config)
        self.sample_rate = codec_config.sample_rate
        self.loss = CodecLoss(codec_config, self.weights)

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        output = self.generator(audio)
        result = self.loss(output, audio, self.discriminators if adversarial else None)
        return output.audio, result.total, result.terms

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(self.generator.encode(audio, self.sample_rate))
