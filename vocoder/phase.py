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

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .spectral import InverseSTFT, MelSpectrogram, stft

DEFAULT_MOMENTUM = 0.99  # torchaudio's and librosa's default for fast Griffin-Lim


@dataclass
class PhaseState:
    """The last frame a phase integration reached: the next block's integration continues from it."""

    log_magnitude: torch.Tensor  # [B, bins]
    phase: torch.Tensor  # [B, bins]


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def _phase_gradients(log_magnitude: torch.Tensor, before: Optional[torch.Tensor], win_length: int,
                     hop_length: int, causal: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Phase advance per frame and, less its constant pi, per bin, both ``[B, N, bins]``, from
    log-magnitudes ``[B, N, bins]`` (``before``: the frame before, ``[B, bins]``; else replicated).
    The magnitude's time derivative is a centred difference, or with ``causal`` a backward one
    (zero-delay real-time PGHI: no frame needs the next one).

    Gaussian-window relations of PGHI with the window's time-frequency ratio (about 0.17 x
    win_length^2), which scores better on speech than the Hann value; phase is referenced to each
    frame's start, as in :func:`~vocoder.spectral.stft`.
    """
    bins = log_magnitude.shape[-1]
    n_fft = 2 * (bins - 1)
    ratio = 2 * math.pi * win_length**2 / (-8 * math.log(0.01))
    scale = ratio / (hop_length * n_fft)
    across = torch.cat([log_magnitude[..., :1], log_magnitude, log_magnitude[..., -1:]], -1)
    centre = torch.arange(bins, device=log_magnitude.device, dtype=log_magnitude.dtype)
    time_step = (across[..., 2:] - across[..., :-2]) / (2 * scale) + 2 * math.pi * hop_length / n_fft * centre
    first = log_magnitude[:, :1] if before is None else before[:, None]
    if causal:
        bin_step = -scale * (log_magnitude - torch.cat([first, log_magnitude[:, :-1]], 1))
        return time_step, bin_step
    along = torch.cat([first, log_magnitude, log_magnitude[:, -1:]], 1)
    bin_step = -scale * (along[:, 2:] - along[:, :-2]) / 2
    return time_step, bin_step


def _scan(source: torch.Tensor, offset: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resolve ``phase[n] = phase[n - 1][source[n]] + offset[n]`` (``[B, N, bins]``) for all frames at
    once: returns ``(index, total)`` with ``phase[n] = phase[-1][index[n]] + total[n]``.

    A Hillis-Steele prefix scan: log2(N) rounds of gathers instead of N sequential steps.
    """
    shift = 1
    while shift < source.shape[1]:
        earlier_source, earlier_offset = source[:, :-shift], offset[:, :-shift]
        later_source = source[:, shift:]
        combined = _wrap(torch.gather(earlier_offset, -1, later_source) + offset[:, shift:])
        source = torch.cat([source[:, :shift], torch.gather(earlier_source, -1, later_source)], 1)
        offset = torch.cat([offset[:, :shift], combined], 1)
        shift *= 2
    return source, offset


def pghi_phase(log_magnitude: torch.Tensor, win_length: int, hop_length: int,
               previous: Optional[PhaseState] = None, causal: bool = False) -> torch.Tensor:
    """Phase ``[B, bins, N]`` from natural-log magnitudes ``[B, bins, N]`` by phase-gradient integration,
    on the magnitude's device.

    Real-time PGHI (Prusa & Holighaus, "Phase vocoder done right", EUSIPCO 2017), vectorised:
    within a frame each bin takes its phase from its louder frequency neighbour, integrating the
    phase's frequency derivative, unless the bin is a peak or the previous frame is louder there;
    then it continues the previous frame's phase, integrating the time derivative. Chains of
    neighbours are resolved by pointer jumping and the frame recursion by a prefix scan.

    ``previous`` is the last frame of an earlier block (see :class:`PhaseState`): integrating a
    signal block by block, each continuing the last, gives the phase of integrating it whole.

    ``causal=True`` is the zero-delay variant: each frame's phase depends on it and earlier frames only
    (a backward difference in time), so a stream can be integrated frame by frame as it arrives.
    """
    if log_magnitude.dim() != 3:
        raise ValueError(f"log_magnitude must be [B, bins, N], got {tuple(log_magnitude.shape)}")
    magnitude = log_magnitude.detach().float().transpose(1, 2)  # [B, N, bins]: gathers run along bins
    batch, frames, bins = magnitude.shape
    if frames == 0:
        return torch.zeros_like(log_magnitude, dtype=torch.float32)
    before = None if previous is None else previous.log_magnitude.float()
    time_step, bin_step = _phase_gradients(magnitude, before, win_length, hop_length, causal)
    # Frequency integral from bin 0 (trapezoid), less the pi per bin, which is added back exactly below.
    integral = torch.cumsum(torch.cat([torch.zeros_like(bin_step[..., :1]),
                                       (bin_step[..., 1:] + bin_step[..., :-1]) / 2], -1), -1)
    floor = torch.full_like(magnitude[..., :1], -math.inf)
    below = torch.cat([floor, magnitude[..., :-1]], -1)
    above = torch.cat([magnitude[..., 1:], floor], -1)
    index = torch.arange(bins, device=magnitude.device).expand(batch, frames, bins)
    neighbour = torch.where(above > below, index + 1, index - 1)
    louder = torch.maximum(above, below)
    last = floor[:, 0, :].expand(batch, bins) if before is None else before
    earlier = torch.cat([last[:, None], magnitude[:, :-1]], 1)
    parent = torch.where((louder > magnitude) & (louder > earlier), neighbour, index)
    root = parent
    for _ in range(max(1, math.ceil(math.log2(bins)))):  # each jump doubles the chain length covered
        root = torch.gather(root, -1, root)
    if previous is None:  # the first frame has nothing to continue: its roots start at phase 0
        time_before = torch.cat([-time_step[:, :1], time_step[:, :-1]], 1)
    else:
        time_before = torch.cat([_phase_gradients(before[:, None], None, win_length, hop_length)[0],
                                 time_step[:, :-1]], 1)
    advance = (torch.gather(time_before, -1, root) + torch.gather(time_step, -1, root)) / 2
    across = integral - torch.gather(integral, -1, root) + math.pi * (index - root)
    source, total = _scan(root, _wrap(advance + across))
    if previous is not None:
        start = previous.phase.float()[:, None].expand(batch, frames, bins)
        total = _wrap(torch.gather(start, -1, source) + total)
    return total.transpose(1, 2).contiguous()


def pghi_step(log_magnitude: torch.Tensor, win_length: int, hop_length: int,
              previous: Optional[PhaseState] = None) -> torch.Tensor:
    """Phase ``[B, bins]`` of one frame's natural-log magnitude ``[B, bins]`` continuing ``previous``:
    zero-delay real-time PGHI for a stream, frame by frame. The same integration as
    :func:`pghi_phase` with ``causal=True`` (equal up to float rounding), in far fewer operations, since
    a single frame needs no prefix scan: what a 20 ms packet can afford on one CPU thread."""
    magnitude = log_magnitude.detach().float()
    batch, bins = magnitude.shape
    n_fft = 2 * (bins - 1)
    ratio = 2 * math.pi * win_length**2 / (-8 * math.log(0.01))
    scale = ratio / (hop_length * n_fft)
    index = torch.arange(bins, device=magnitude.device).expand(batch, bins)
    advance_per_bin = 2 * math.pi * hop_length / n_fft * index

    def time_step(frame: torch.Tensor) -> torch.Tensor:  # _phase_gradients' time_step for one frame
        across = torch.cat([frame[:, :1], frame, frame[:, -1:]], -1)
        return (across[:, 2:] - across[:, :-2]) / (2 * scale) + advance_per_bin

    now = time_step(magnitude)
    before = magnitude if previous is None else previous.log_magnitude.float()
    bin_step = -scale * (magnitude - before)
    trapezoids = (bin_step[:, 1:] + bin_step[:, :-1]) / 2
    integral = torch.cumsum(torch.cat([torch.zeros_like(bin_step[:, :1]), trapezoids], -1), -1)
    floor = torch.full_like(magnitude[:, :1], -math.inf)
    below = torch.cat([floor, magnitude[:, :-1]], -1)
    above = torch.cat([magnitude[:, 1:], floor], -1)
    louder = torch.maximum(above, below)
    earlier = floor.expand(batch, bins) if previous is None else before
    neighbour = torch.where(above > below, index + 1, index - 1)
    root = torch.where((louder > magnitude) & (louder > earlier), neighbour, index)
    for _ in range(max(1, math.ceil(math.log2(bins)))):
        root = torch.gather(root, -1, root)
    then = -now if previous is None else time_step(before)
    advance = (torch.gather(then, -1, root) + torch.gather(now, -1, root)) / 2
    total = _wrap(advance + integral - torch.gather(integral, -1, root) + math.pi * (index - root))
    if previous is None:
        return total
    return _wrap(torch.gather(previous.phase.float(), -1, root) + total)


def match_mel(magnitude: torch.Tensor, target_mel: torch.Tensor, fbank: torch.Tensor, coverage: torch.Tensor,
              floor: float) -> torch.Tensor:
    """Rescale ``magnitude [B, bins, N]`` so that its mel equals ``target_mel [B, n_mels, N]`` (linear):
    each bin takes the filter-weighted mean of the gains of the bands it belongs to (``fbank [n_mels,
    bins]``, ``coverage = fbank.sum(0)``); bins outside every filter keep their magnitude."""
    current = torch.matmul(fbank, magnitude)
    ratio = target_mel / current.clamp(min=floor)
    gain = torch.matmul(fbank.T, ratio) / coverage.clamp(min=1e-8)[:, None]
    gain = torch.where(coverage[:, None] > 0, gain, torch.ones_like(gain))
    return magnitude * gain


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
        return match_mel(magnitude, target_mel, self.mel.fbank, self.coverage, self.mel.config.log_floor)

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
