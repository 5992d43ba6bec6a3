"""Codec recipe: GRVQ codec trained end to end against the shared discriminators.

Config sections: ``model`` (``kind``, ``spectral`` by default or ``waveform``, and the fields of that
design's config: :class:`~codec.SpectralCodecConfig` or :class:`~codec.WaveformCodecConfig`), ``loss``
(:class:`~vocoder.losses.LossWeights`), ``discriminators``, ``data``, ``optim``, ``trainer``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from codec import Codec, SpectralCodec, SpectralCodecConfig, read_saved_codec
from codec.config import codec_config_from_dict
from codec.training import CodecLoss
from vocoder import Vocoder

from .audio_module import AudioGanModule
from .config import RecipeConfigError


class CodecModule(AudioGanModule):
    """Lightning module training a :class:`~codec.Codec` of either design."""

    def __init__(self, config: Dict[str, Any]) -> None:
        codec_config = codec_config_from_dict(config["model"], "model")
        if config["init"] and isinstance(codec_config, SpectralCodecConfig):
            # A saved spectral codec holds its own vocoder (the shipped one is configured otherwise than
            # the recipe's default): build with that vocoder, so that warm start and resume both fit.
            _, saved, _ = read_saved_codec(Path(config["init"]))
            if isinstance(saved, SpectralCodecConfig):
                codec_config = replace(codec_config, vocoder=saved.vocoder)
        if config["vocoder"] and not isinstance(codec_config, SpectralCodecConfig):
            raise RecipeConfigError("'vocoder' applies to the spectral codec only: a waveform codec holds none")
        super().__init__(config, Codec(codec_config), codec_config.sample_rate)
        self.loss = CodecLoss.for_config(codec_config, self.weights)
        self.vocoder_dir = config["vocoder"]
        if isinstance(self.generator, SpectralCodec):
            self.generator.vocoder.requires_grad_(False)  # trained by its own recipe
        self._load_vocoder()

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
        return self.generator.adversarial_training and super().adversarial_active()

    def generator_loss(self, audio: torch.Tensor, adversarial: bool) -> Tuple[Optional[torch.Tensor], torch.Tensor, Dict[str, torch.Tensor]]:
        output = self.generator(audio, self._num_codebooks())
        result = self.loss(output, audio, self.discriminators if adversarial else None)
        return getattr(output, "audio", None), result.total, result.terms

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
