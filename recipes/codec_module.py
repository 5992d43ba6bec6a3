"""Codec recipe: GRVQ codec trained end to end against the shared discriminators.

Config sections: ``model`` (:class:`~codec.CodecConfig` fields), ``loss``
(:class:`~vocoder.losses.LossWeights`), ``discriminators``, ``data``, ``optim``, ``trainer``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from codec import Codec, CodecConfig
from codec.training import CodecLoss
from vocoder import Vocoder
from vocoder.checkpoint import config_from_dict, read_config

from .audio_module import AudioGanModule


class CodecModule(AudioGanModule):
    """Lightning module training a :class:`~codec.Codec`."""

    def __init__(self, config: Dict[str, Any]) -> None:
        codec_config = config_from_dict(CodecConfig, config["model"], "model")
        if config["init"] and codec_config.kind == "spectral":
            # A saved spectral codec holds its own vocoder (the shipped one is configured otherwise than
            # the recipe's default): build with that vocoder, so that warm start and resume both fit.
            codec_config = replace(codec_config, vocoder=read_config(CodecConfig, config["init"], "Codec").vocoder)
        super().__init__(config, Codec(codec_config), codec_config.sample_rate)
        self.loss = CodecLoss(codec_config, self.weights)
        self.vocoder_dir = config["vocoder"]
        if self.generator.vocoder is not None:
            self.generator.vocoder.requires_grad_(False)  # trained by its own recipe
        self._load_vocoder()  # Codec.load_vocoder refuses a waveform codec

    def _load_vocoder(self) -> None:
        """Put the trained vocoder of ``vocoder: DIR`` (if given) into the codec, frozen."""
        if self.vocoder_dir:
            self.generator.load_vocoder(Vocoder.from_pretrained(self.vocoder_dir))
            self.generator.vocoder.requires_grad_(False)

    def warm_start(self, directory: Path) -> None:
        """``init: DIR`` loads every weight (a spectral codec's vocoder too); ``vocoder: DIR`` then
        replaces the vocoder."""
        super().warm_start(directory)
        self._load_vocoder()

    def adversarial_active(self) -> bool:
        # The spectral codec trains on mel frames only (no waveform to judge): no discriminator steps.
        return self.generator.vocoder is None and super().adversarial_active()

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        output = self.generator(audio, self._num_codebooks())
        result = self.loss(output, audio, self.discriminators if adversarial else None)
        return output.audio, result.total, result.terms

    def _num_codebooks(self) -> Optional[int]:
        """A frozen quantizer (``optim.frozen``) runs in eval mode, where the library's quantizer
        dropout is off: draw the level count here as it would (uniform over whole levels), so a
        fine-tuned decoder still serves every bitrate."""
        codec = self.generator
        if codec.quantizer.training or not codec.config.quantizer.quantize_dropout:
            return None
        allowed = codec.allowed_num_codebooks
        return allowed[int(torch.randint(len(allowed), ()))]

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(self.generator.encode(audio, self.sample_rate))
