"""Loading the demo's models once at start: the shipped ones, or small seeded random-weight ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, TypeVar, Union

import torch

from codec import Codec, SpectralCodecConfig
from generation import AudioGen
from vocoder.checkpoint import CheckpointError

logger = logging.getLogger(__name__)

M = TypeVar("M")

@dataclass
class DemoModels:
    """The models the demo serves, and where each came from."""

    generator: AudioGen
    codec: Codec
    generator_source: str  # "shipped model", a directory, or "random weights (seed N)"
    codec_source: str
    generator_trained: bool
    codec_trained: bool

    @classmethod
    def random(cls, seed: int = 0, device: Union[str, torch.device] = "cpu") -> "DemoModels":
        """Small seeded random-weight models (untrained: they make noise), sharing one codec."""
        generator = AudioGen.random_init(codec_config=SpectralCodecConfig.small(), seed=seed).to(device)
        source = f"random weights (seed {seed})"
        return cls(generator, generator.codec, source, source, generator_trained=False, codec_trained=False)

    def codebook_choices(self) -> List[int]:
        """Codebook counts the codec accepts (whole residual levels)."""
        return self.codec.allowed_num_codebooks

    def describe(self) -> str:
        """Markdown for the page: which models are loaded, and a warning for random weights."""
        codec = self.codec
        lines = [
            f"**Text to audio:** {self.generator_source} · "
            f"**Codec:** {self.codec_source}, {codec.sample_rate / 1000:g} kHz, {codec.frame_rate:g} frames/s, "
            f"up to {codec.num_codebooks} codebooks of {codec.codebook_size} ({codec.bitrate / 1000:g} kbit/s)"
        ]
        untrained = [name for name, trained in (("text to audio", self.generator_trained),
                                                 ("codec", self.codec_trained)) if not trained]
        if untrained:
            lines.append(f"> ⚠️ **Random weights ({' and '.join(untrained)}): untrained, output is noise.** "
                         f"No trained {' or '.join(untrained)} model is loaded; train one with the recipes and "
                         "start the demo with `--generator DIR` / `--codec DIR`.")
        return "\n\n".join(lines)


def _load_or_none(load: Callable[[], M], path: Optional[Path], what: str) -> Optional[M]:
    """``load()``; a missing *shipped* model (``path=None``) gives ``None``, an explicit path must load."""
    try:
        return load()
    except CheckpointError as err:
        if path is not None:
            raise
        logger.warning("no shipped %s model (%s); using random weights", what, err)
        return None


def load_models(generator_path: Optional[Union[str, Path]] = None, codec_path: Optional[Union[str, Path]] = None,
                random_init: bool = False, seed: int = 0,
                device: Union[str, torch.device, None] = None) -> DemoModels:
    """Load the models once for the whole server.

    ``None`` paths mean the shipped models; when none is shipped the demo falls back to
    :meth:`DemoModels.random`. ``random_init=True`` skips loading. Without a shipped codec the codec
    tab uses the generator's codec. ``device`` defaults to CUDA when available.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if random_init:
        return DemoModels.random(seed, device)
    generator_dir = None if generator_path is None else Path(generator_path)
    codec_dir = None if codec_path is None else Path(codec_path)
    generator = _load_or_none(lambda: AudioGen.from_pretrained(generator_dir, device=device), generator_dir, "AudioGen")
    codec = _load_or_none(lambda: Codec.from_pretrained(codec_dir, device=device), codec_dir, "codec")

    if generator is None:
        fallback = DemoModels.random(seed, device)
        generator, generator_source, generator_trained = fallback.generator, fallback.generator_source, False
    else:
        generator_source, generator_trained = _source(generator_dir), True
    if codec is None:  # the generator's own codec: trained if the generator is
        codec, codec_source, codec_trained = generator.codec, generator_source, generator_trained
    else:
        codec_source, codec_trained = _source(codec_dir), True
    return DemoModels(generator, codec, generator_source, codec_source, generator_trained, codec_trained)


def _source(path: Optional[Path]) -> str:
    return "shipped model" if path is None else f"model from {path}"
