"""The toolkit's one set of discriminators, shared by codec and vocoder training.

Multi-period (HiFi-GAN), multi-scale (HiFi-GAN) and multi-scale STFT (EnCodec, taken from the
``encodec`` package). Channel widths are config fields: the reference widths are far too slow on a
CPU, and a smaller set trains the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from encodec.msstftd import MultiScaleSTFTDiscriminator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Logits = List[torch.Tensor]
FeatureMaps = List[List[torch.Tensor]]


@dataclass
class DiscriminatorConfig:
    """Which discriminators to use and how wide. Empty ``periods`` / zero ``scales`` turn one off."""

    periods: Tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: Tuple[int, ...] = (16, 64, 256, 512)
    scales: int = 3
    scale_channels: Tuple[int, ...] = (16, 64, 256, 512)
    stft_filters: int = 16
    stft_n_ffts: Tuple[int, ...] = (1024, 2048, 512)
    use_stft: bool = True


def _apply_stack(convs: nn.ModuleList, out: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Leaky-ReLU convolution stack then the output layer: (flattened logits, every feature map)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``[T / p, p]`` and applies 2-D convolutions along time."""

    def __init__(self, period: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.period = period
        convs, c_in = [], 1
        for i, c_out in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            convs.append(weight_norm(nn.Conv2d(c_in, c_out, (5, 1), stride, padding=(2, 0))))
            c_in = c_out
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        batch, channels, length = x.shape
        if length % self.period:
            x = F.pad(x, (0, self.period - length % self.period), mode="reflect")
        return _apply_stack(self.convs, self.out, x.view(batch, channels, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """Strided grouped 1-D convolutions over a (possibly average-pooled) waveform."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        convs, c_in = [weight_norm(nn.Conv1d(1, channels[0], 15, padding=7))], channels[0]
        for c_out in channels[1:]:
            groups = max(1, min(c_in, c_out) // 16)
            convs.append(weight_norm(nn.Conv1d(c_in, c_out, 41, stride=4, groups=groups, padding=20)))
            c_in = c_out
        convs.append(weight_norm(nn.Conv1d(c_in, c_in, 5, padding=2)))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv1d(c_in, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return _apply_stack(self.convs, self.out, x)


class Discriminators(nn.Module):
    """All configured discriminators; ``forward(x)`` returns every logit and every feature map."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        self.config = config
        self.periods = nn.ModuleList(PeriodDiscriminator(p, config.period_channels) for p in config.periods)
        self.scales = nn.ModuleList(ScaleDiscriminator(config.scale_channels) for _ in range(config.scales))
        self.stft = (
            MultiScaleSTFTDiscriminator(
                filters=config.stft_filters,
                n_ffts=list(config.stft_n_ffts),
                hop_lengths=[n // 4 for n in config.stft_n_ffts],
                win_lengths=list(config.stft_n_ffts),
            )
            if config.use_stft
            else None
        )

    def forward(self, x: torch.Tensor) -> Tuple[Logits, FeatureMaps]:
        """``x``: waveform ``[B, 1, T]``."""
        logits: Logits = []
        features: FeatureMaps = []
        for disc in self.periods:
            logit, feats = disc(x)
            logits.append(logit)
            features.append(feats)
        pooled = x
        for i, disc in enumerate(self.scales):
            if i:
                pooled = F.avg_pool1d(pooled, 4, 2, padding=2)
            logit, feats = disc(pooled)
            logits.append(logit)
            features.append(feats)
        if self.stft is not None:
            stft_logits, stft_features = self.stft(x)
            logits.extend(stft_logits)
            features.extend(stft_features)
        return logits, features
