"""Short-time Fourier analysis and synthesis: the toolkit's one STFT, mel frontend and inverse STFT.

Framing convention ("same" padding, as in Vocos): a signal of ``T`` samples has exactly
``T // hop_length`` frames, frame ``n`` centred on sample ``n * hop + hop / 2``, so models that work
at frame level produce exactly ``frames * hop`` samples. The inverse STFT uses only real-valued
matrix products and shifted additions, so it has no edge-window check to fail and exports to ONNX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn


def _check_framing(n_fft: int, hop_length: int, win_length: int) -> None:
    if hop_length <= 0 or win_length <= 0 or n_fft <= 0:
        raise ValueError("n_fft, hop_length and win_length must be positive")
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} exceeds n_fft {n_fft}")
    if (n_fft - hop_length) % 2:
        raise ValueError(f"n_fft - hop_length must be even for 'same' framing, got {n_fft} - {hop_length}")


def padded_window(n_fft: int, win_length: int, device=None) -> torch.Tensor:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` samples."""
    window = torch.hann_window(win_length, periodic=True, device=device)
    left = (n_fft - win_length) // 2
    return F.pad(window, (left, n_fft - win_length - left))


def stft(x: torch.Tensor, n_fft: int, hop_length: int, win_length: Optional[int] = None) -> torch.Tensor:
    """Complex STFT ``[B, n_fft // 2 + 1, T // hop]`` of ``x`` shaped ``[B, T]`` or ``[B, 1, T]``."""
    win_length = win_length or n_fft
    _check_framing(n_fft, hop_length, win_length)
    if x.dim() == 3:
        x = x.squeeze(1)
    pad = (n_fft - hop_length) // 2
    mode = "reflect" if x.shape[-1] > pad else "constant"
    x = F.pad(x[:, None], (pad, pad), mode=mode)[:, 0]
    window = torch.hann_window(win_length, periodic=True, device=x.device, dtype=x.dtype)
    return torch.stft(x, n_fft, hop_length, win_length, window, center=False, return_complex=True)


@dataclass
class MelConfig:
    """Log-mel analysis parameters. Stored inside model configs so decoding always matches training."""

    sample_rate: int = 16_000
    n_fft: int = 640
    hop_length: int = 160
    win_length: int = 640
    n_mels: int = 80
    f_min: float = 0.0
    f_max: Optional[float] = None
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        _check_framing(self.n_fft, self.hop_length, self.win_length)
        nyquist = self.sample_rate / 2
        if self.f_max is not None and not 0 <= self.f_min < self.f_max <= nyquist:
            raise ValueError(f"need 0 <= f_min < f_max <= {nyquist}")


class MelSpectrogram(nn.Module):
    """Natural-log mel magnitude spectrogram ``[B, n_mels, T // hop]`` (Slaney-normalised filters)."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        fbank = AF.melscale_fbanks(
            n_freqs=config.n_fft // 2 + 1,
            f_min=config.f_min,
            f_max=config.f_max if config.f_max is not None else config.sample_rate / 2,
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)  # [n_mels, n_freqs]
        # Minimum-norm inverse of the filterbank (torch.linalg.lstsq's default CPU driver returns
        # zeros for this under-determined system, so use the pseudo-inverse), in float64 for accuracy.
        inverse = torch.linalg.pinv(fbank.T.double()).float()
        self.register_buffer("inverse_fbank", inverse.contiguous(), persistent=False)  # [n_freqs, n_mels]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.config
        magnitude = stft(wav.float(), c.n_fft, c.hop_length, c.win_length).abs()
        mel = torch.matmul(self.fbank, magnitude)
        return torch.log(torch.clamp(mel, min=c.log_floor))

    def pseudo_inverse(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Rough natural-log magnitude spectrum ``[..., n_fft // 2 + 1, N]`` of a log-mel
        ``[..., n_mels, N]``: ``log(max(|M+ exp(mel)|, floor))`` with ``M+`` the filterbank's
        pseudo-inverse (FreeV's amplitude prior; also the start of Griffin-Lim from a mel)."""
        magnitude = torch.matmul(self.inverse_fbank, torch.exp(log_mel.float())).abs()
        return torch.log(torch.clamp(magnitude, min=self.config.log_floor))


class InverseSTFT(nn.Module):
    """Real-valued inverse STFT for "same" framing: ``N`` frames in, ``N * hop`` samples out.

    The inverse real DFT is a product with fixed cosine and sine bases (windowed), and overlap-add
    is ``n_fft / hop`` shifted additions; the result is normalised by the summed squared window.
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: Optional[int] = None) -> None:
        super().__init__()
        win_length = win_length or n_fft
        _check_framing(n_fft, hop_length, win_length)
        if n_fft % hop_length:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop_length ({hop_length})")
        self.n_fft, self.hop_length = n_fft, hop_length
        bins = n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)
        t = torch.arange(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * t[None, :] / n_fft
        # Hermitian symmetry: interior bins count twice; DC and Nyquist once; imaginary DC/Nyquist vanish.
        scale = torch.full((bins, 1), 2.0, dtype=torch.float64)
        scale[0] = 1.0
        if n_fft % 2 == 0:
            scale[-1] = 1.0
        window = padded_window(n_fft, win_length).double()
        cos_basis = scale * torch.cos(angle) / n_fft * window
        sin_basis = -scale * torch.sin(angle) / n_fft * window
        self.register_buffer("cos_basis", cos_basis.float(), persistent=False)  # [bins, n_fft]
        self.register_buffer("sin_basis", sin_basis.float(), persistent=False)
        self.register_buffer("window_sq", (window**2).float(), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, N, n_fft]`` frames -> ``[B, (N + r - 1) * hop]`` summed signal, r = n_fft / hop."""
        batch, count, _ = frames.shape
        hop, ratio = self.hop_length, self.n_fft // self.hop_length
        out = None
        for k in range(ratio):
            part = frames[..., k * hop : (k + 1) * hop].reshape(batch, count * hop)
            part = F.pad(part, (k * hop, (ratio - 1 - k) * hop))
            out = part if out is None else out + part
        return out

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """Real and imaginary parts ``[B, n_fft // 2 + 1, N]`` -> waveform ``[B, N * hop]``."""
        frames = torch.matmul(real.transpose(1, 2), self.cos_basis) + torch.matmul(
            imag.transpose(1, 2), self.sin_basis
        )
        signal = self._overlap_add(frames)
        envelope = self._overlap_add(self.window_sq.expand(1, frames.shape[1], -1))
        pad = (self.n_fft - self.hop_length) // 2
        length = frames.shape[1] * self.hop_length
        signal = signal[:, pad : pad + length]
        envelope = envelope[:, pad : pad + length]
        return signal / torch.clamp(envelope, min=1e-8)
