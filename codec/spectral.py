"""The spectral codec's encoder and decoder: log-mel frames in, log-mel frames out.

The spectral design (:class:`~codec.SpectralCodec`, the default) quantizes a frame-level encoding of the
log-mel spectrogram and decodes back to a log-mel, which the codec's own mel vocoder (with phase
refinement) turns into a waveform. Training needs no waveform losses: an L1 on log-mel frames is
cheap, so a CPU hour buys many more steps than the waveform design gets (the codec model card,
"Why this design", has the measurement that chose it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vocoder.modules import Backbone, BackboneConfig, CausalConv1d, CausalConvTranspose1d, StreamCache
from vocoder.spectral import MelConfig, MelSpectrogram
from vocoder.streaming import CausalMelSpectrogram


def default_stage() -> BackboneConfig:
    return BackboneConfig(kind="convnext", dim=256, intermediate_dim=768, num_layers=3)


@dataclass
class SpectralConfig:
    """Sizes of the mel encoder and decoder: a ConvNeXt stage at the mel frame rate and one at the
    code frame rate (``downsample`` mel frames per code frame) on each side.

    ``mel_mean`` / ``mel_scale`` map natural-log mel values (floor log(1e-5) = -11.5, loud speech
    near 0) to roughly unit range before the encoder; the decoder undoes the same map.
    """

    downsample: int = 2
    mel_stage: BackboneConfig = field(default_factory=default_stage)
    code_stage: BackboneConfig = field(default_factory=default_stage)
    mel_mean: float = -5.0
    mel_scale: float = 3.0

    def __post_init__(self) -> None:
        if self.downsample < 2 or self.downsample % 2:
            raise ValueError(f"downsample must be a positive even number, got {self.downsample}")
        if self.mel_scale <= 0:
            raise ValueError(f"mel_scale must be positive, got {self.mel_scale}")


class MelEncoder(nn.Module):
    """Waveform ``[B, 1, T]`` -> log-mel ``[B, n_mels, T // mel_hop]`` -> latent ``[B, D, T // hop]``.

    ``causal=True`` (the streaming codec): the mel frames end at their hop (no lookahead,
    :class:`~vocoder.streaming.CausalMelSpectrogram`) and every convolution is padded on the left only,
    so code frame ``f`` depends on samples before ``(f + 1) * hop`` only; same parameters as the
    centred encoder. :meth:`step` encodes a stream hop by hop."""

    def __init__(self, mel: MelConfig, config: SpectralConfig, latent_dim: int, causal: bool = False) -> None:
        super().__init__()
        self.config = config
        self.causal = causal
        self.frontend = CausalMelSpectrogram(mel) if causal else MelSpectrogram(mel)
        d = config.downsample
        self.mel_stage = Backbone(mel.n_mels, config.mel_stage, causal=causal)
        if causal:  # kernel 2d, stride d, d frames of left padding: this code frame's mel frames and the last one's
            self.down: nn.Conv1d = CausalConv1d(config.mel_stage.dim, config.code_stage.dim, 2 * d, stride=d)
        else:  # kernel 2d, stride d, padding d/2 (rounded down): exactly N / d output frames for N divisible by d.
            self.down = nn.Conv1d(config.mel_stage.dim, config.code_stage.dim, 2 * d, stride=d, padding=d // 2)
        self.code_stage = Backbone(config.code_stage.dim, config.code_stage, causal=causal)
        self.project = nn.Conv1d(config.code_stage.dim, latent_dim, 1)

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.config.mel_mean) / self.config.mel_scale

    def encode_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, D, N // downsample]`` of log-mel ``[B, n_mels, N]`` (``N`` divisible by downsample)."""
        h = self.down(self.mel_stage(self.normalise(log_mel)))
        return self.project(self.code_stage(h))[..., : log_mel.shape[-1] // self.config.downsample]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encode_mel(self.frontend(wav))

    def step(self, samples: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Latent ``[B, D, k]`` of the newly pushed ``samples [B, k * hop]`` (causal encoders only)."""
        h = self.mel_stage.step(self.normalise(self.frontend.step(samples, cache)), cache)
        return self.project(self.code_stage.step(self.down.step(h, cache), cache))


class MelDecoder(nn.Module):
    """Quantized latent ``[B, D, F]`` -> log-mel ``[B, n_mels, F * downsample]``.

    ``causal=True``: left-padded convolutions and a transposed convolution cut on the right, so the
    mel frames of code frame ``f`` depend on codes up to ``f`` only; same parameters. :meth:`step`
    decodes a stream code frame by code frame."""

    def __init__(self, mel: MelConfig, config: SpectralConfig, latent_dim: int, causal: bool = False) -> None:
        super().__init__()
        self.config = config
        self.log_floor = float(torch.log(torch.tensor(mel.log_floor)))
        d = config.downsample
        self.code_stage = Backbone(latent_dim, config.code_stage, causal=causal)
        if causal:
            self.up: nn.ConvTranspose1d = CausalConvTranspose1d(config.code_stage.dim, config.mel_stage.dim, 2 * d, d)
        else:
            self.up = nn.ConvTranspose1d(config.code_stage.dim, config.mel_stage.dim, 2 * d, stride=d,
                                         padding=d // 2)
        self.mel_stage = Backbone(config.mel_stage.dim, config.mel_stage, causal=causal)
        self.project = nn.Conv1d(config.mel_stage.dim, mel.n_mels, 1)

    def _log_mel(self, h: torch.Tensor) -> torch.Tensor:
        # A log-mel never goes below the analysis floor: clamping keeps decoded mels in range.
        return (self.project(h) * self.config.mel_scale + self.config.mel_mean).clamp(min=self.log_floor)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        frames = latent.shape[-1] * self.config.downsample
        h = self.up(self.code_stage(latent))[..., :frames]
        return self._log_mel(self.mel_stage(h))

    def step(self, latent: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Log-mel ``[B, n_mels, k * downsample]`` of the newly pushed latent frames ``[B, D, k]`` (causal only)."""
        return self._log_mel(self.mel_stage.step(self.up.step(self.code_stage.step(latent, cache), cache), cache))
