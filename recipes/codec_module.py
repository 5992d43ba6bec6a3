"""Codec recipe: GRVQ codec trained end to end against the shared discriminators.

Config sections: ``model`` (:class:`~codec.CodecConfig` fields), ``loss``
(:class:`~vocoder.losses.LossWeights`), ``discriminators``, ``data``, ``optim``, ``trainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from codec import Codec, CodecConfig
from codec.training import CodecLoss
from vocoder import Vocoder
from vocoder.checkpoint import config_from_dict

from .audio_module import AudioGanModule


class CodecModule(AudioGanModule):
    """Lightning module training a :class:`~codec.Codec`."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__(config)
        codec_config = config_from_dict(CodecConfig, config["model"], "model")
        self.generator = Codec(codec_config)
        self.sample_rate = codec_config.sample_rate
        self.loss = CodecLoss(codec_config, self.weights)
        self.vocoder_dir = config["vocoder"]
        self._load_vocoder()  # Codec.load_vocoder refuses a waveform codec
        if self.generator.vocoder is not None:
            self.generator.vocoder.requires_grad_(False)  # trained by its own recipe

    def _load_vocoder(self) -> None:
        if self.vocoder_dir:
            self.generator.load_vocoder(Vocoder.from_pretrained(self.vocoder_dir))

    def warm_start(self, directory: Path) -> None:
        """``init: DIR`` loads every weight (a spectral codec's vocoder too); ``vocoder: DIR`` then
        replaces the vocoder."""
        super().warm_start(directory)
        self._load_vocoder()

    def adversarial_active(self) -> bool:
        # The spectral codec trains on mel frames only (no waveform to judge): no discriminator steps.
        return self.generator.vocoder is None and super().adversarial_active()

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        output = self.generator(audio)
        result = self.loss(output, audio, self.discriminators if adversarial else None)
        return output.audio, result.total, result.terms

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(self.generator.encode(audio, self.sample_rate))
