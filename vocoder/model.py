"""The mel vocoder: log-mel frames -> amplitude and phase spectra -> waveform, all at frame level.

APNet-style: one trunk at the mel frame rate feeds an amplitude predictor and a phase predictor,
and the waveform appears only in the real-valued inverse STFT, so there is no upsampling network.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from .audio import ArrayLike, prepare_waveform
from .checkpoint import Pretrained
from .modules import AmplitudePhaseHead, Backbone, BackboneConfig, SpectrumPrediction
from .phase import PhaseRefiner, pghi_phase
from .spectral import MelConfig, MelSpectrogram

DEFAULT_PRETRAINED = Path(__file__).parent / "pretrained" / "default"

# Phase refinement iterations after the network (Vocoder.decode(refine=...)). The default keeps the
# vocoder with its refinement well above 15x faster than HiFi-GAN v1 on a CPU (bench_vocoder.py);
# the best-quality setting is for offline use (reports/ shows quality against iterations).
REFINE_DEFAULT = 8
REFINE_BEST = 64
# Where the refinement starts: the network's own phase, PGHI's phase integrated from the network's
# amplitude, or random phase (all with the network's amplitude). PGHI is the default: on held-out
# speech it beat the CPU-trained network's phase at every iteration count (reports/).
PHASE_STARTS = ("network", "pghi", "random")
DEFAULT_PHASE_START = "pghi"
# Natural-log mels of audio in [-1, 1] lie within about log(1e-5) = -11.5 .. 6; far outside this a
# "mel" is in other units (dB, log10) or corrupt, and the network would output NaN or noise.
MEL_RANGE = (-40.0, 20.0)


def _finite(audio: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(audio).all():
        raise ValueError("the vocoder produced NaN or infinite samples (damaged weights or an extreme mel)")
    return audio


# The two trunk families, sized to equal CPU decoding cost (about 0.1 s per 10 s of audio on two
# threads, ~55x faster than HiFi-GAN v1: benchmarks/bench_vocoder.py). For equal CPU training time
# on real speech the ConvNeXt trunk trained more steps and reached far better PESQ / STOI / mel
# distance (benchmarks/vocoder_quality.py), so it is the default.
BACKBONES: Dict[str, BackboneConfig] = {
    "convnext": BackboneConfig(kind="convnext", dim=256, intermediate_dim=768, num_layers=8),  # APNet2 / Vocos
    "residual": BackboneConfig(kind="residual", dim=128, num_layers=2),  # APNet: HiFi-GAN MRF blocks
}
DEFAULT_BACKBONE = "convnext"


def default_backbone() -> BackboneConfig:
    return replace(BACKBONES[DEFAULT_BACKBONE])


@dataclass
class VocoderConfig:
    """Mel analysis, trunk, and synthesis STFT of a :class:`Vocoder`.

    The synthesis hop is always the mel hop (one STFT frame per mel frame). ``n_fft`` and
    ``win_length`` of the synthesis STFT may differ from the mel analysis; ``n_fft`` must be a
    multiple of the hop (the inverse STFT overlap-adds whole hops).

    ``amplitude_prior`` (FreeV): the amplitude predictor corrects the mel filterbank's
    pseudo-inverse instead of predicting the log-amplitude from scratch. It starts training at a
    sensible spectrum envelope, so short runs reach far better quality (benchmarks/vocoder_quality.py).
    """

    mel: MelConfig = field(default_factory=MelConfig)
    backbone: BackboneConfig = field(default_factory=default_backbone)
    n_fft: int = 640
    win_length: int = 640
    amplitude_prior: bool = True
    # False: the amplitude is the prior itself, nothing learned. On held-out speech the prior scored
    # better than a CPU-trained correction (reports/), so the shipped vocoder keeps it fixed.
    learned_amplitude: bool = True

    def __post_init__(self) -> None:
        if not (self.learned_amplitude or self.amplitude_prior):
            raise ValueError("learned_amplitude=False needs amplitude_prior=True (the amplitude is then the prior)")
        hop = self.hop_length
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got {self.win_length} and {self.n_fft}")
        if self.n_fft % hop or (self.n_fft - hop) % 2:
            raise ValueError(f"synthesis n_fft ({self.n_fft}) must be a multiple of the mel hop ({hop}) "
                             f"with n_fft - hop even")
        if self.amplitude_prior and self.n_fft != self.mel.n_fft:
            raise ValueError(f"amplitude_prior needs the synthesis n_fft ({self.n_fft}) to equal the mel "
                             f"n_fft ({self.mel.n_fft}): the prior lives on the mel's frequency bins")

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length


class Vocoder(nn.Module, Pretrained):
    """Frame-level mel vocoder (log-mel ``[B, n_mels, N]`` -> waveform ``[B, 1, N * hop]``).

    >>> voc = Vocoder(VocoderConfig())
    >>> mel = voc.mel(wav, sample_rate)   # any layout, any rate
    >>> audio = voc.decode(mel)           # [B, 1, N * hop] at voc.sample_rate
    """

    config_class = VocoderConfig
    default_pretrained = DEFAULT_PRETRAINED

    def __init__(self, config: Optional[VocoderConfig] = None) -> None:
        super().__init__()
        self.config = config = config or VocoderConfig()
        self.mel_spectrogram = MelSpectrogram(config.mel)
        self.backbone = Backbone(config.mel.n_mels, config.backbone)
        self.head = AmplitudePhaseHead(config.backbone.dim, config.n_fft, config.hop_length, config.win_length,
                                       amplitude_prior=config.amplitude_prior,
                                       learned_amplitude=config.learned_amplitude)
        self.refiner = PhaseRefiner(self.mel_spectrogram)

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def n_mels(self) -> int:
        return self.config.mel.n_mels

    def forward(self, mel: torch.Tensor) -> SpectrumPrediction:
        """Training forward: log-mel ``[B, n_mels, N]`` -> :class:`SpectrumPrediction` (with gradients)."""
        prior = self.mel_spectrogram.pseudo_inverse(mel) if self.config.amplitude_prior else None
        return self.head(self.backbone(mel), prior)

    @torch.no_grad()
    def mel(self, wav: ArrayLike, sample_rate: int) -> torch.Tensor:
        """Log-mel ``[B, n_mels, T // hop]`` of audio shaped ``[T]``, ``[C, T]`` or ``[B, C, T]``
        (numpy or torch, any rate: channels are averaged, the rate converted)."""
        wav = prepare_waveform(wav, sample_rate, self.sample_rate).to(self.device)
        if wav.shape[-1] < self.hop_length:
            raise ValueError(f"audio shorter than one frame ({self.hop_length} samples at {self.sample_rate} Hz)")
        return self.mel_spectrogram(wav)

    @torch.no_grad()
    def decode(self, mel: torch.Tensor, refine: Optional[int] = None, start: Optional[str] = None) -> torch.Tensor:
        """Waveform ``[B, 1, N * hop]`` at :attr:`sample_rate` from log-mel ``[B, n_mels, N]`` or ``[n_mels, N]``.

        ``refine`` is the number of mel-consistent fast Griffin-Lim iterations run after the
        network (:class:`~vocoder.phase.PhaseRefiner`): ``0`` is the pure APNet path, ``None`` the
        default :data:`REFINE_DEFAULT`, :data:`REFINE_BEST` the best-quality setting. ``start`` is
        the phase they start from (:data:`PHASE_STARTS`; ``None``: :data:`DEFAULT_PHASE_START`, or
        the network's own phase when ``refine=0``, which is then the pure network output).
        """
        if isinstance(mel, np.ndarray):
            mel = torch.from_numpy(np.ascontiguousarray(mel))
        if not isinstance(mel, torch.Tensor) or not mel.is_floating_point():
            raise ValueError(f"mel must be a floating-point torch.Tensor or numpy array, got "
                             f"{getattr(mel, 'dtype', type(mel).__name__)}")
        refine = REFINE_DEFAULT if refine is None else refine
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ValueError(f"refine must be a non-negative number of iterations, got {refine!r}")
        if start is None:  # refine=0 alone is the pure APNet path
            start = DEFAULT_PHASE_START if refine > 0 else "network"
        if start not in PHASE_STARTS:
            raise ValueError(f"start must be one of {PHASE_STARTS}, got {start!r}")
        if mel.dim() == 2:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[1] != self.n_mels or mel.shape[-1] == 0:
            raise ValueError(f"mel must be shaped [B, {self.n_mels}, N] with N > 0, got {tuple(mel.shape)}")
        if not torch.isfinite(mel).all():
            raise ValueError("mel contains NaN or infinite values")
        low, high = float(mel.min()), float(mel.max())
        if low < MEL_RANGE[0] or high > MEL_RANGE[1]:
            raise ValueError(f"mel values {low:.1f}..{high:.1f} lie outside the range of a natural-log mel "
                             f"{MEL_RANGE} (Vocoder.mel computes it; a dB or log10 mel must be converted)")
        mel = mel.to(self.device, torch.float32)
        return _finite(self._synthesise(mel, refine, start))

    def _synthesise(self, mel: torch.Tensor, refine: int, start: str) -> torch.Tensor:
        c = self.config
        if start == "network" or c.learned_amplitude:
            prediction = self(mel)
            if refine == 0 and start == "network":
                return prediction.waveform
            log_amplitude, network_phase = prediction.log_amplitude, prediction.phase
        else:  # the amplitude is the prior and the phase comes from elsewhere: no network pass needed
            log_amplitude = self.mel_spectrogram.pseudo_inverse(mel).clamp(max=AmplitudePhaseHead.max_log_amplitude)
            network_phase = None
        if c.n_fft != c.mel.n_fft or c.win_length != c.mel.win_length:
            raise ValueError("phase refinement needs the synthesis STFT to equal the mel STFT; "
                             "use refine=0 and start='network' with this model")
        phase = {"network": lambda: network_phase,
                 "pghi": lambda: pghi_phase(log_amplitude, c.win_length, c.hop_length),
                 "random": lambda: None}[start]()
        generator = torch.Generator(self.device).manual_seed(0)  # random starts are reproducible
        return self.refiner(torch.exp(log_amplitude), phase, refine, target_log_mel=mel, generator=generator)
