"""Objective quality metrics for reconstructed audio: mel distance, multi-scale STFT distance,
SI-SDR, PESQ and STOI.

``pesq`` and ``pystoi`` are optional packages (installed with the ``test`` extra); the functions
that need them raise ``ImportError`` with the package name when they are missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from .audio import resample
from .spectral import MelConfig, MelSpectrogram


def _align(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    length = min(reference.shape[-1], estimate.shape[-1])
    return reference[..., :length].reshape(-1, length).float(), estimate[..., :length].reshape(-1, length).float()


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Mean L1 distance between natural-log mel spectrograms (n_fft 1024, hop 256, 80 mels)."""
    reference, estimate = _align(reference, estimate)
    mel = MelSpectrogram(MelConfig(sample_rate, 1024, 256, 1024, 80)).to(reference.device)
    return float(torch.mean(torch.abs(mel(reference) - mel(estimate))))


def stft_distance(reference: torch.Tensor, estimate: torch.Tensor,
                  n_ffts: tuple[int, ...] = (2048, 512, 128)) -> float:
    """Mean L1 distance between log10 magnitude spectra over several STFT sizes (hop n_fft / 4),
    as DAC reports it: the coarse sizes weigh harmonic detail, the fine ones transients."""
    reference, estimate = _align(reference, estimate)
    total = 0.0
    for n_fft in n_ffts:
        window = torch.hann_window(n_fft, device=reference.device)
        spectra = [torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs()
                   for x in (reference, estimate)]
        total += float(torch.mean(torch.abs(torch.log10(spectra[0] + 1e-5) - torch.log10(spectra[1] + 1e-5))))
    return total / len(n_ffts)


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (averaged over the batch)."""
    reference, estimate = _align(reference, estimate)
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    ratio = target.pow(2).sum(-1) / ((estimate - target).pow(2).sum(-1) + eps)
    return float(torch.mean(10 * torch.log10(ratio + eps)))


def _speech_pair(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, rate: int):
    reference, estimate = _align(reference, estimate)
    reference = resample(reference, sample_rate, rate)
    estimate = resample(estimate, sample_rate, rate)
    return reference.cpu().numpy().astype(np.float64), estimate.cpu().numpy().astype(np.float64)


SPEECH_METRIC_PACKAGES = {"pesq": "pesq", "stoi": "pystoi"}  # metric -> the package that computes it


class MetricUnavailable(ImportError):
    """A metric's package is not installed."""


def require_package(metric: str) -> Any:
    """The module that computes ``metric`` ("pesq" or "stoi"), or :class:`MetricUnavailable` saying
    how to install it: a missing package must never make a metric silently disappear from a report."""
    package = SPEECH_METRIC_PACKAGES[metric]
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MetricUnavailable(f"{metric.upper()} needs the {package!r} package: pip install {package} "
                                f"(./setup.sh test installs it)") from None


def pesq_wideband(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Wide-band PESQ (at 16 kHz, resampled if needed), averaged over the batch."""
    pesq = require_package("pesq").pesq

    ref, est = _speech_pair(reference, estimate, sample_rate, 16_000)
    return float(np.mean([pesq(16_000, r, e, "wb") for r, e in zip(ref, est)]))


def stoi(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Short-time objective intelligibility (0..1), averaged over the batch."""
    _stoi = require_package("stoi").stoi

    ref, est = _speech_pair(reference, estimate, sample_rate, 16_000)
    return float(np.mean([_stoi(r, e, 16_000, extended=False) for r, e in zip(ref, est)]))


def optional_metric(metric: Callable[..., float], *args) -> Optional[float]:
    """``metric(*args)``, or None where it fails: PESQ fails on silent or too-short clips, which
    then simply do not count (:class:`MetricAverager` skips None). A missing package is raised."""
    try:
        return metric(*args)
    except MetricUnavailable:
        raise
    except Exception:  # noqa: BLE001 - the metric packages raise bare Exceptions
        return None


@dataclass
class MetricAverager:
    """Running means of named metrics over a validation set."""

    totals: Dict[str, float] = field(default_factory=dict)
    counts: Dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: Optional[float]) -> None:
        if value is None or not np.isfinite(value):
            return
        self.totals[name] = self.totals.get(name, 0.0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> Dict[str, float]:
        return {name: self.totals[name] / self.counts[name] for name in self.totals}
