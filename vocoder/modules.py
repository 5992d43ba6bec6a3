"""Frame-level building blocks: residual blocks, backbones and the amplitude/phase spectrum head.

Everything here runs at the frame rate of its input (no upsampling anywhere); the waveform only
appears in :class:`AmplitudePhaseHead`, through the inverse STFT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .spectral import InverseSTFT


# What a causal layer remembers between streaming steps, keyed by the layer (one dict per stream).
StreamCache = Dict[nn.Module, torch.Tensor]


class CausalConv1d(nn.Conv1d):
    """A ``Conv1d`` padded on the left only (EnCodec's causal convolution): output frame ``n`` sees input
    frames up to ``n * stride + stride - 1``, never later ones. Its parameters are a plain ``Conv1d``'s
    (same names and shapes), so weights of a centred convolution load into it.

    :meth:`step` runs it on a stream: the frames pushed so far (a multiple of ``stride`` at a time),
    remembering the last ``left_padding`` input frames in a :data:`StreamCache`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups,
                         bias=bias, padding=0)
        self.left_padding = dilation * (kernel_size - 1) + 1 - stride
        if self.left_padding < 0:
            raise ValueError(f"a causal convolution needs stride <= its reach, got kernel {kernel_size}, "
                             f"stride {stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_padding, 0)))

    def step(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Output for the newly pushed frames ``x [B, C, n]`` (``n`` a multiple of the stride)."""
        if x.shape[-1] % self.stride[0]:
            raise ValueError(f"push a multiple of {self.stride[0]} frames, got {x.shape[-1]}")
        past = cache.get(self)
        if past is None:  # zeros, as forward's left padding
            past = x.new_zeros(x.shape[0], x.shape[1], self.left_padding)
        joined = torch.cat([past, x], -1)
        cache[self] = joined[..., joined.shape[-1] - self.left_padding:]
        if self.dilation[0] != 1:
            return super().forward(joined)
        # A few frames at a time, a product with the unfolded input costs far less than conv1d's set-up.
        patches = joined.unfold(-1, self.kernel_size[0], self.stride[0])  # [B, C, n, k]
        if self.groups == 1:
            out = torch.matmul(patches.permute(0, 2, 1, 3).flatten(2), self.weight.flatten(1).T).transpose(1, 2)
        elif self.groups == self.in_channels == self.out_channels:  # depth-wise
            out = (patches * self.weight[:, None, 0]).sum(-1)
        else:
            return super().forward(joined)
        return out if self.bias is None else out + self.bias[:, None]


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """A ``ConvTranspose1d`` whose output is cut on the right only: ``N`` input frames give ``N * stride``
    output frames, and output frame ``m`` depends on input frames up to ``m // stride``. Parameters as a
    plain ``ConvTranspose1d``'s. :meth:`step` carries the not yet complete overlap between pushes."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        if kernel_size < stride:
            raise ValueError(f"kernel {kernel_size} shorter than stride {stride} would leave gaps")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., : x.shape[-1] * self.stride[0]]

    def step(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Output frames ``[B, C_out, n * stride]`` for the newly pushed input frames ``x [B, C_in, n]``."""
        stride, kernel = self.stride[0], self.kernel_size[0]
        spread = F.conv_transpose1d(x, self.weight, None, stride=stride)  # [B, C_out, (n - 1) * stride + kernel]
        pending = cache.get(self)
        if pending is not None:  # the earlier inputs' contributions that reach into these frames
            spread = torch.cat([spread[..., :pending.shape[-1]] + pending, spread[..., pending.shape[-1]:]], -1)
        ready = x.shape[-1] * stride
        cache[self] = spread[..., ready:]
        out = spread[..., :ready]
        return out if self.bias is None else out + self.bias[:, None]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block on ``[B, C, N]``: depth-wise conv, LayerNorm, inverted MLP, layer scale.

    ``causal=True`` pads the depth-wise convolution on the left only (same parameters), so the block
    never looks ahead and can run on a stream (:meth:`step`)."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int = 7, layer_scale: float = 1e-6,
                 causal: bool = False) -> None:
        super().__init__()
        if causal:
            self.dwconv: nn.Conv1d = CausalConv1d(dim, dim, kernel_size, groups=dim)
        else:
            self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y.transpose(1, 2)))))
        return x + (self.gamma * y).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, self.dwconv(x))

    def step(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Streaming form of :meth:`forward` (causal blocks only): the output for the new frames ``x``."""
        return self._mix(x, self.dwconv.step(x, cache))


class ResidualBlock(nn.Module):
    """HiFi-GAN style residual block: dilated convolutions with leaky ReLU, one skip per dilation."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2)
            for d in dilations
        )
        self.plain = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            y = dilated(F.leaky_relu(x, 0.1))
            x = x + plain(F.leaky_relu(y, 0.1))
        return x


class MultiReceptiveField(nn.Module):
    """Average of residual blocks with different kernel sizes (HiFi-GAN's MRF, APNet's trunk unit)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 7, 11), dilations: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(channels, k, dilations) for k in kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(block(x) for block in self.blocks) / len(self.blocks)


@dataclass
class BackboneConfig:
    """Frame-level trunk shared by the amplitude and phase predictors.

    ``kind="convnext"`` is APNet2/Vocos style (ConvNeXt blocks); ``kind="residual"`` is APNet style
    (multi-receptive-field residual blocks).
    """

    kind: str = "convnext"
    dim: int = 384
    intermediate_dim: int = 1152
    num_layers: int = 8
    input_kernel_size: int = 7

    def __post_init__(self) -> None:
        if self.kind not in ("convnext", "residual"):
            raise ValueError(f"backbone kind must be 'convnext' or 'residual', got {self.kind!r}")


class Backbone(nn.Module):
    """``[B, in_channels, N]`` features -> ``[B, dim, N]`` hidden states at the same frame rate.

    ``causal=True`` (ConvNeXt only) pads every convolution on the left only, with the same parameter
    names and shapes as the centred backbone (so its weights warm-start a causal one), and adds
    :meth:`step` for streaming. It is a constructor argument, not a config field, because configs are
    hashed into codec fingerprints.
    """

    def __init__(self, in_channels: int, config: BackboneConfig, causal: bool = False) -> None:
        super().__init__()
        self.config = config
        self.causal = causal
        k = config.input_kernel_size
        if causal and config.kind != "convnext":
            raise ValueError("only a ConvNeXt backbone has a causal form")
        self.embed = CausalConv1d(in_channels, config.dim, k) if causal else nn.Conv1d(in_channels, config.dim, k,
                                                                                          padding=k // 2)
        if config.kind == "convnext":
            self.norm_in = nn.LayerNorm(config.dim, eps=1e-6)
            layer_scale = 1.0 / config.num_layers
            self.layers = nn.ModuleList(
                ConvNeXtBlock(config.dim, config.intermediate_dim, layer_scale=layer_scale, causal=causal)
                for _ in range(config.num_layers)
            )
        else:
            self.norm_in = nn.Identity()
            self.layers = nn.ModuleList(MultiReceptiveField(config.dim) for _ in range(config.num_layers))
        self.norm_out = nn.LayerNorm(config.dim, eps=1e-6)

    @property
    def receptive_field(self) -> int:
        """Input frames on each side (a causal backbone: on the left) that reach one output frame (the
        context chunked inference needs)."""
        if self.causal:
            return self.embed.left_padding + sum(layer.dwconv.left_padding for layer in self.layers)
        reach = self.embed.padding[0]
        for layer in self.layers:
            if isinstance(layer, ConvNeXtBlock):
                reach += layer.dwconv.padding[0]
            else:  # parallel residual blocks: the widest one counts
                reach += max(sum(conv.padding[0] for conv in (*block.dilated, *block.plain)) for block in layer.blocks)
        return reach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        if isinstance(self.norm_in, nn.LayerNorm):
            x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return self.norm_out(x.transpose(1, 2)).transpose(1, 2)

    def step(self, x: torch.Tensor, cache: StreamCache) -> torch.Tensor:
        """Streaming form of :meth:`forward` (causal backbones): hidden states of the new frames ``x``."""
        x = self.norm_in(self.embed.step(x, cache).transpose(1, 2)).transpose(1, 2)
        for layer in self.layers:
            x = layer.step(x, cache)
        return self.norm_out(x.transpose(1, 2)).transpose(1, 2)


@dataclass
class SpectrumPrediction:
    """What the amplitude/phase head predicts for ``N`` frames (``F = n_fft // 2 + 1`` bins)."""

    waveform: torch.Tensor  # [B, 1, N * hop]
    log_amplitude: torch.Tensor  # [B, F, N]
    phase: torch.Tensor  # [B, F, N], in (-pi, pi]
    real: torch.Tensor  # [B, F, N]
    imag: torch.Tensor  # [B, F, N]


class AmplitudeSpectrumPredictor(nn.Module):
    """Predicts the log-amplitude spectrum from hidden states with one convolution.

    Given a ``prior`` log-amplitude (FreeV: the mel pseudo-inverse), it predicts only the
    correction to it; ``residual=True`` zero-initialises the convolution so training starts exactly
    at the prior.
    """

    def __init__(self, dim: int, bins: int, kernel_size: int = 7, residual: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv1d(dim, bins, kernel_size, padding=kernel_size // 2)
        if residual:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, prior: Optional[torch.Tensor] = None) -> torch.Tensor:
        correction = self.proj(h)
        return correction if prior is None else prior + correction


class PhaseSpectrumPredictor(nn.Module):
    """Predicts the wrapped phase spectrum: two parallel convolutions give pseudo real and
    imaginary parts, and ``atan2`` turns them into a phase, so no phase wrapping has to be learned."""

    def __init__(self, dim: int, bins: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.real = nn.Conv1d(dim, bins, kernel_size, padding=kernel_size // 2)
        self.imag = nn.Conv1d(dim, bins, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.atan2(self.imag(h), self.real(h))


class AmplitudePhaseHead(nn.Module):
    """Hidden states -> log-amplitude and phase spectra -> waveform through :class:`InverseSTFT`."""

    max_log_amplitude = 10.0  # exp(10) ~ 2e4: far above any real spectrum, keeps early training finite

    def __init__(self, dim: int, n_fft: int, hop_length: int, win_length: int,
                 amplitude_prior: bool = False, learned_amplitude: bool = True) -> None:
        super().__init__()
        bins = n_fft // 2 + 1
        if not (learned_amplitude or amplitude_prior):
            raise ValueError("without a learned amplitude the head needs the amplitude prior")
        # Without a learned amplitude the log-amplitude is the prior itself (no parameters).
        self.amplitude = AmplitudeSpectrumPredictor(dim, bins, residual=amplitude_prior) if learned_amplitude else None
        self.phase = PhaseSpectrumPredictor(dim, bins)
        self.istft = InverseSTFT(n_fft, hop_length, win_length)

    @property
    def receptive_field(self) -> int:
        """Hidden frames on each side that reach one predicted spectrum frame."""
        return self.phase.real.padding[0]

    def forward(self, h: torch.Tensor, log_amplitude_prior: Optional[torch.Tensor] = None) -> SpectrumPrediction:
        """``h`` ``[B, dim, N]``; ``log_amplitude_prior`` ``[B, F, N]`` if the head predicts a correction."""
        log_amplitude = log_amplitude_prior if self.amplitude is None else self.amplitude(h, log_amplitude_prior)
        log_amplitude = log_amplitude.clamp(max=self.max_log_amplitude)
        phase = self.phase(h)
        amplitude = torch.exp(log_amplitude)
        real, imag = amplitude * torch.cos(phase), amplitude * torch.sin(phase)
        waveform = self.istft(real, imag)[:, None]
        return SpectrumPrediction(waveform, log_amplitude, phase, real, imag)
