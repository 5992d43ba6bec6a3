"""Phase refinement: fast Griffin-Lim from a given start, optionally consistent with a target mel.

One home for turning an amplitude (and a first guess of the phase) into a waveform by iterating
between the time and time-frequency domains. It runs on the toolkit's own STFT and inverse STFT
(the same "same" framing the models use), batched, on any device.

Two modes:

* **fixed amplitude** (Griffin-Lim): each iteration keeps the given magnitude and takes the phase
  of the STFT of the last estimate, with Perraudin et al.'s momentum ("fast Griffin-Lim").
* **mel-consistent** (``target_log_mel`` given): each iteration instead rescales the *current*
  magnitude, mel band by mel band, so that its mel equals the target mel. The magnitude is then
  free to regain the harmonic detail the mel discarded (a simple form of Masuyama et al.,
  "Signal reconstruction from mel-spectrogram based on bi-level consistency", WASPAA 2023).
  On real speech this adds about 0.4-0.5 PESQ over fixed-amplitude Griffin-Lim from the same mel.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional

import numpy as np
import torch

from .spectral import InverseSTFT, MelSpectrogram, stft

DEFAULT_MOMENTUM = 0.99  # torchaudio's and librosa's default for fast Griffin-Lim


@lru_cache(maxsize=1)
def _pghi_kernel() -> Callable[..., np.ndarray]:
    """pghipy's heap integration, compiled by numba with an on-disk cache (the package's own
    ``@jit`` has none, which costs about 10 s of compilation in every new process)."""
    import numba
    from pghipy import pghipy as implementation

    return numba.njit(cache=True)(implementation.pghi.py_func)


def pghi_phase(log_magnitude: torch.Tensor, win_length: int, hop_length: int) -> torch.Tensor:
    """Phase ``[B, bins, N]`` from natural-log magnitudes ``[B, bins, N]`` by phase-gradient heap
    integration (Prusa et al. 2017; ``pghipy``), with the Gaussian window's time-frequency ratio
    (about 0.17 x win_length^2), which scores better on speech than the Hann value."""
    if log_magnitude.dim() != 3:
        raise ValueError(f"log_magnitude must be [B, bins, N], got {tuple(log_magnitude.shape)}")
    kernel = _pghi_kernel()
    magnitude = torch.exp(log_magnitude.detach().double()).cpu().numpy()
    # pghipy works on [frames, bins] and references phase to each frame's start, as our STFT does.
    phases = [kernel(np.ascontiguousarray(m.T), win_length, hop_length).T for m in magnitude]
    return torch.from_numpy(np.stack(phases)).to(log_magnitude.device, torch.float32)


class PhaseRefiner(torch.nn.Module):
    """Fast Griffin-Lim on the STFT of a :class:`MelSpectrogram`'s framing.

    >>> refiner = PhaseRefiner(MelSpectrogram(MelConfig()))
    >>> wav = refiner(magnitude, phase, iterations=8, target_log_mel=log_mel)   # [B, 1, N * hop]
    """

    def __init__(self, mel: MelSpectrogram) -> None:
        super().__init__()
        c = mel.config
        self.n_fft, self.hop_length, self.win_length = c.n_fft, c.hop_length, c.win_length
        self.mel = mel
        self.istft = InverseSTFT(c.n_fft, c.hop_length, c.win_length)
        # Bins outside every mel filter (e.g. DC with f_min > 0) keep their magnitude: gain 1.
        coverage = mel.fbank.sum(dim=0)  # [bins]
        self.register_buffer("coverage", coverage, persistent=False)

    def _synthesise(self, magnitude: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        spectrum = magnitude * unit
        return self.istft(spectrum.real, spectrum.imag)

    def _match_mel(self, magnitude: torch.Tensor, target_mel: torch.Tensor) -> torch.Tensor:
        """Rescale ``magnitude [B, bins, N]`` so that its mel equals ``target_mel [B, n_mels, N]``."""
        fbank = self.mel.fbank  # [n_mels, bins]
        current = torch.matmul(fbank, magnitude)
        ratio = target_mel / current.clamp(min=self.mel.config.log_floor)
        # Each bin takes the filter-weighted mean of the gains of the bands it belongs to.
        gain = torch.matmul(fbank.T, ratio) / self.coverage.clamp(min=1e-8)[:, None]
        gain = torch.where(self.coverage[:, None] > 0, gain, torch.ones_like(gain))
        return magnitude * gain

    @torch.no_grad()
    def forward(self, magnitude: torch.Tensor, phase: Optional[torch.Tensor] = None, iterations: int = 8,
                target_log_mel: Optional[torch.Tensor] = None, momentum: float = DEFAULT_MOMENTUM,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Waveform ``[B, 1, N * hop]`` from ``magnitude [B, bins, N]`` (linear) and a start
        ``phase [B, bins, N]`` (random when None) after ``iterations`` refinement steps.

        With ``target_log_mel [B, n_mels, N]`` the magnitude follows the target mel (see the
        module docstring); without it the magnitude stays fixed. ``iterations=0`` synthesises the
        start as it is.
        """
        if magnitude.dim() != 3 or magnitude.shape[1] != self.n_fft // 2 + 1:
            raise ValueError(f"magnitude must be [B, {self.n_fft // 2 + 1}, N], got {tuple(magnitude.shape)}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        magnitude = magnitude.float()
        if phase is None:
            phase = 2 * torch.pi * torch.rand(magnitude.shape, generator=generator, device=magnitude.device)
        elif phase.shape != magnitude.shape:
            raise ValueError(f"phase {tuple(phase.shape)} and magnitude {tuple(magnitude.shape)} differ in shape")
        target_mel = None
        if target_log_mel is not None:
            if target_log_mel.shape != (magnitude.shape[0], self.mel.fbank.shape[0], magnitude.shape[-1]):
                raise ValueError(f"target_log_mel must be [B, {self.mel.fbank.shape[0]}, N] matching the magnitude, "
                                 f"got {tuple(target_log_mel.shape)}")
            target_mel = torch.exp(target_log_mel.float())
        unit = torch.polar(torch.ones_like(magnitude), phase.float())
        previous = torch.zeros_like(unit)
        for _ in range(iterations):
            rebuilt = stft(self._synthesise(magnitude, unit), self.n_fft, self.hop_length, self.win_length)
            if target_mel is not None:
                magnitude = self._match_mel(rebuilt.abs(), target_mel)
            accelerated = rebuilt - previous * (momentum / (1 + momentum))
            unit = accelerated / (accelerated.abs() + 1e-16)
            previous = rebuilt
        return self._synthesise(magnitude, unit)[:, None]
