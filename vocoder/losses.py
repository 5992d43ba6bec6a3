"""Training losses shared by codec and vocoder: adversarial, feature matching, mel and phase.

The phase losses follow APNet: instantaneous phase, group delay (difference along frequency) and
instantaneous angular frequency (difference along time), each through an anti-wrapping function so
that a phase error of 2π costs nothing. Differences use ``torch.diff``, not dense matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .discriminators import FeatureMaps, Logits
from .spectral import MelConfig, MelSpectrogram, stft


@dataclass
class LossOutput:
    """A generator loss (:class:`~vocoder.training.VocoderLoss`, :class:`~codec.training.CodecLoss`):
    the total to back-propagate and its named terms, detached, for logging."""

    total: torch.Tensor
    terms: Dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def detached(cls, total: torch.Tensor, terms: Dict[str, torch.Tensor]) -> "LossOutput":
        """``total`` as it is and a detached copy of each term."""
        return cls(total, {name: value.detach() for name, value in terms.items()})


def discriminator_loss(real: Logits, fake: Logits) -> torch.Tensor:
    """Least-squares GAN loss for the discriminators: real -> 1, generated -> 0."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f**2) for r, f in zip(real, fake)) / len(real)


def generator_adversarial_loss(fake: Logits) -> torch.Tensor:
    """Least-squares GAN loss for the generator: make the discriminators output 1."""
    return sum(torch.mean((1 - f) ** 2) for f in fake) / len(fake)


def feature_matching_loss(real: FeatureMaps, fake: FeatureMaps) -> torch.Tensor:
    """Mean L1 distance between discriminator feature maps of real and generated audio."""
    total, count = 0.0, 0
    for real_maps, fake_maps in zip(real, fake):
        for r, f in zip(real_maps, fake_maps):
            total = total + torch.mean(torch.abs(r.detach() - f))
            count += 1
    return total / max(count, 1)


# HiFi-Codec's three mel terms: (n_fft, hop, n_mels) per resolution.
DEFAULT_MEL_SCALES: Tuple[Tuple[int, int, int], ...] = ((1024, 256, 80), (512, 128, 64), (256, 64, 32))


class MultiScaleMelLoss(nn.Module):
    """L1 distance between log-mel spectrograms at several resolutions (``(n_fft, hop, n_mels)``)."""

    def __init__(self, sample_rate: int, scales: Sequence[Tuple[int, int, int]] = DEFAULT_MEL_SCALES):
        super().__init__()
        self.mels = nn.ModuleList(
            MelSpectrogram(MelConfig(sample_rate, n_fft, hop, n_fft, n_mels)) for n_fft, hop, n_mels in scales
        )

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(F.l1_loss(mel(generated), mel(target)) for mel in self.mels) / len(self.mels)


def anti_wrapping(x: torch.Tensor, kind: str = "linear") -> torch.Tensor:
    """Phase-error penalty that is zero at every multiple of 2π.

    ``linear``: distance to the nearest multiple of 2π (APNet2); ``cos``: ``1 - cos(x)`` (APNet's
    ``-cos`` shifted to be zero at the optimum).
    """
    if kind == "linear":
        return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))
    if kind == "cos":
        return 1 - torch.cos(x)
    raise ValueError(f"anti-wrapping kind must be 'linear' or 'cos', got {kind!r}")


@dataclass
class PhaseLosses:
    """The three APNet phase losses (each a mean over bins and frames)."""

    instantaneous_phase: torch.Tensor
    group_delay: torch.Tensor
    angular_frequency: torch.Tensor

    def total(self) -> torch.Tensor:
        return self.instantaneous_phase + self.group_delay + self.angular_frequency


def phase_losses(predicted: torch.Tensor, target: torch.Tensor, kind: str = "linear",
                 weight: Optional[torch.Tensor] = None) -> PhaseLosses:
    """Anti-wrapped phase losses between phase spectra ``[B, F, N]`` (frequency axis 1, time axis 2).

    Plain means over bins and frames (APNet), or, given a non-negative ``weight`` ``[B, F, N]``,
    weighted means (a difference between neighbours takes their geometric-mean weight).
    """

    def mean(error: torch.Tensor, w: Optional[torch.Tensor]) -> torch.Tensor:
        return error.mean() if w is None else (error * w).sum() / w.sum().clamp(min=1e-12)

    def neighbours(dim: int) -> Optional[torch.Tensor]:
        if weight is None:
            return None
        count = weight.shape[dim] - 1
        return torch.sqrt(weight.narrow(dim, 0, count) * weight.narrow(dim, 1, count))

    return PhaseLosses(
        instantaneous_phase=mean(anti_wrapping(predicted - target, kind), weight),
        group_delay=mean(anti_wrapping(torch.diff(predicted, dim=1) - torch.diff(target, dim=1), kind),
                         neighbours(1)),
        angular_frequency=mean(anti_wrapping(torch.diff(predicted, dim=2) - torch.diff(target, dim=2), kind),
                               neighbours(2)),
    )


def amplitude_loss(predicted_log: torch.Tensor, target_log: torch.Tensor) -> torch.Tensor:
    """Mean squared error between log-amplitude spectra."""
    return F.mse_loss(predicted_log, target_log)


def spectral_convergence(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the magnitude error relative to the target's, per item, averaged
    (Arik et al., 2018). Dominated by the loudest bins: it keeps the partials and the level that
    an L1 on log magnitudes lets blur (a blurred log spectrum is quieter once exponentiated)."""
    error = (predicted - target).flatten(1).norm(dim=1)
    return (error / target.flatten(1).norm(dim=1).clamp(min=1e-8)).mean()


def log_amplitude(spectrum: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """Natural log of the magnitude of a complex spectrum, floored to stay finite in silence."""
    return torch.log(torch.clamp(spectrum.abs(), min=floor))


def stft_consistency_loss(real: torch.Tensor, imag: torch.Tensor, waveform: torch.Tensor,
                          n_fft: int, hop_length: int, win_length: int) -> torch.Tensor:
    """Gap between the predicted spectrum and the STFT of the waveform synthesised from it.

    Not every array of complex numbers is the STFT of some signal; this pulls the prediction
    towards the consistent set.
    """
    resynth = stft(waveform, n_fft, hop_length, win_length)
    frames = min(resynth.shape[-1], real.shape[-1])
    return torch.mean((resynth.real[..., :frames] - real[..., :frames]) ** 2
                      + (resynth.imag[..., :frames] - imag[..., :frames]) ** 2)


def real_imag_loss(generated: torch.Tensor, target: torch.Tensor,
                   n_fft: int, hop_length: int, win_length: int) -> torch.Tensor:
    """L1 distance between real and imaginary parts of the STFTs of two waveforms."""
    g = stft(generated, n_fft, hop_length, win_length)
    t = stft(target, n_fft, hop_length, win_length)
    return F.l1_loss(g.real, t.real) + F.l1_loss(g.imag, t.imag)


@dataclass
class LossWeights:
    """Weights of the generator loss terms (APNet's values for the spectral terms)."""

    mel: float = 45.0
    amplitude: float = 45.0
    phase: float = 100.0
    consistency: float = 20.0
    real_imag: float = 45.0  # APNet: 20 x 2.25
    adversarial: float = 1.0
    feature_matching: float = 2.0
    quantizer: float = 10.0
    # Spectral codec only: spectral convergence on the linear mel magnitudes beside the log-mel L1.
    linear_mel: float = 0.0
    phase_kind: str = "linear"
    # "amplitude": phase errors weighted by the target amplitude, so the loud partials that carry the
    # sound count, not noise-like bins whose phase is arbitrary (vocoder model card); "none": APNet's means.
    phase_weighting: str = "amplitude"

    def __post_init__(self) -> None:
        if self.phase_weighting not in ("none", "amplitude"):
            raise ValueError(f"phase_weighting must be 'none' or 'amplitude', got {self.phase_weighting!r}")


def spectrum_losses(prediction, target: torch.Tensor, n_fft: int, hop_length: int, win_length: int,
                    phase_kind: str = "linear", phase_weighting: str = "none") -> dict:
    """Frame-level reconstruction losses of an :class:`~vocoder.modules.SpectrumPrediction`
    against the target waveform ``[B, 1, T]``: amplitude, the three phase terms, consistency and
    real/imaginary L1. Returns a dict of scalar tensors."""
    target_spec = stft(target, n_fft, hop_length, win_length)
    frames = min(target_spec.shape[-1], prediction.phase.shape[-1])
    target_spec = target_spec[..., :frames]
    weight = target_spec.abs() if phase_weighting == "amplitude" else None
    phases = phase_losses(prediction.phase[..., :frames], torch.angle(target_spec), phase_kind, weight)
    length = min(prediction.waveform.shape[-1], target.shape[-1])
    return {
        "amplitude": amplitude_loss(prediction.log_amplitude[..., :frames], log_amplitude(target_spec)),
        "instantaneous_phase": phases.instantaneous_phase,
        "group_delay": phases.group_delay,
        "angular_frequency": phases.angular_frequency,
        "consistency": stft_consistency_loss(prediction.real, prediction.imag, prediction.waveform,
                                             n_fft, hop_length, win_length),
        "real_imag": real_imag_loss(prediction.waveform[..., :length], target[..., :length],
                                    n_fft, hop_length, win_length),
    }


def weighted_spectrum_loss(terms: dict, weights: LossWeights) -> torch.Tensor:
    """Combine :func:`spectrum_losses` terms with ``weights``."""
    phase = terms["instantaneous_phase"] + terms["group_delay"] + terms["angular_frequency"]
    return (weights.amplitude * terms["amplitude"] + weights.phase * phase
            + weights.consistency * terms["consistency"] + weights.real_imag * terms["real_imag"])


def adversarial_generator_losses(discriminators: nn.Module, generated: torch.Tensor,
                                 target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Generator side of GAN training: (adversarial loss, feature-matching loss)."""
    fake_logits, fake_features = discriminators(generated)
    with torch.no_grad():
        _, real_features = discriminators(target)
    return generator_adversarial_loss(fake_logits), feature_matching_loss(real_features, fake_features)


def adversarial_discriminator_loss(discriminators: nn.Module, generated: torch.Tensor,
                                   target: torch.Tensor) -> torch.Tensor:
    """Discriminator side of GAN training (generated audio is detached)."""
    real_logits, _ = discriminators(target)
    fake_logits, _ = discriminators(generated.detach())
    return discriminator_loss(real_logits, fake_logits)
