"""The mel vocoder: log-mel frames -> amplitude and phase spectra -> waveform, all at frame level.

APNet-style: one trunk at the mel frame rate feeds an amplitude predictor and a phase predictor,
and the waveform appears only in the real-valued inverse STFT, so there is no upsampling network.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .audio import ArrayLike, prepare_waveform
from .checkpoint import Pretrained
from .chunking import ChunkSpan, chunk_spans
from .modules import AmplitudePhaseHead, Backbone, BackboneConfig, SpectrumPrediction
from .phase import PhaseRefiner, PhaseState, pghi_phase
from .spectral import MelConfig, MelSpectrogram

DEFAULT_PRETRAINED = Path(__file__).parent / "pretrained" / "default"

# Phase refinement iterations after the network (Vocoder.decode(refine=...)): the default trades quality
# for speed, the best is for offline use (vocoder model card, "Metrics").
REFINE_DEFAULT = 8
REFINE_BEST = 64
# Where the refinement starts: the network's own phase, PGHI's phase integrated from the network's
# amplitude, or random phase (all with the network's amplitude). PGHI is the better start (vocoder model card).
PHASE_STARTS = ("network", "pghi", "random")
DEFAULT_PHASE_START = "pghi"
# Mel frames decoded per block (10 s at 16 kHz): bounds the refinement's memory on long inputs.
CHUNK_FRAMES = 1000
# Natural-log mels of audio in [-1, 1] lie within about log(1e-5) = -11.5 .. 6; far outside this a
# "mel" is in other units (dB, log10) or corrupt, and the network would output NaN or noise.
MEL_RANGE = (-40.0, 20.0)


def mel_fault(mel: torch.Tensor) -> Optional[str]:
    """What unfits ``mel`` for synthesis, in words (NaN or infinite values, or values outside the
    range of a natural-log mel, :data:`MEL_RANGE`); ``None`` when it is fit."""
    if not torch.isfinite(mel).all():
        return "NaN or infinite values"
    low, high = float(mel.min()), float(mel.max())
    if low < MEL_RANGE[0] or high > MEL_RANGE[1]:
        return f"values {low:.1f}..{high:.1f}, outside the range of a natural-log mel {MEL_RANGE}"
    return None


def _finite(audio: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(audio).all():
        raise ValueError("the vocoder produced NaN or infinite samples (damaged weights or an extreme mel)")
    return audio


# The two trunk families, sized to equal CPU decoding cost; ConvNeXt trains better in equal CPU time
# (vocoder model card, "Decisions").
BACKBONES: Dict[str, BackboneConfig] = {
    "convnext": BackboneConfig(kind="convnext", dim=256, intermediate_dim=768, num_layers=8),  # APNet2 / Vocos
    "residual": BackboneConfig(kind="residual", dim=128, num_layers=2),  # APNet: HiFi-GAN MRF blocks
}
DEFAULT_BACKBONE = "convnext"


def default_backbone() -> BackboneConfig:
    return replace(BACKBONES[DEFAULT_BACKBONE])


@dataclass
class VocoderConfig:
    """Mel analysis, trunk, and synthesis STFT of a :class:`Vocoder`; the defaults are the shipped vocoder's.

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
    # False (as shipped): the amplitude is the prior itself, nothing learned (vocoder model card, "Decisions").
    learned_amplitude: bool = False

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
        self.frontend = MelSpectrogram(config.mel)  # the analysis config.mel sets; mel() is its checked public entry
        self.backbone = Backbone(config.mel.n_mels, config.backbone)
        self.head = AmplitudePhaseHead(config.backbone.dim, config.n_fft, config.hop_length, config.win_length,
                                       amplitude_prior=config.amplitude_prior,
                                       learned_amplitude=config.learned_amplitude)
        self.refiner = PhaseRefiner(self.frontend)

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
        prior = self.frontend.pseudo_inverse(mel) if self.config.amplitude_prior else None
        return self.head(self.backbone(mel), prior)

    @torch.no_grad()
    def mel(self, wav: ArrayLike, sample_rate: int) -> torch.Tensor:
        """Log-mel ``[B, n_mels, T // hop]`` of audio shaped ``[T]``, ``[C, T]`` or ``[B, C, T]``
        (numpy or torch, any rate: channels are averaged, the rate converted)."""
        wav = prepare_waveform(wav, sample_rate, self.sample_rate).to(self.device)
        if wav.shape[-1] < self.hop_length:
            raise ValueError(f"audio shorter than one frame ({self.hop_length} samples at {self.sample_rate} Hz)")
        return self.frontend(wav)

    @torch.no_grad()
    def decode(self, mel: torch.Tensor, refine: Optional[int] = None, start: Optional[str] = None,
               chunk_frames: Optional[int] = None, progress: Optional[bool] = False) -> torch.Tensor:
        """Waveform ``[B, 1, N * hop]`` at :attr:`sample_rate` from log-mel ``[B, n_mels, N]`` or ``[n_mels, N]``.

        ``refine`` is the number of mel-consistent fast Griffin-Lim iterations run after the
        network (:class:`~vocoder.phase.PhaseRefiner`): ``0`` is the pure APNet path, ``None`` the
        default :data:`REFINE_DEFAULT`, :data:`REFINE_BEST` the best-quality setting. ``start`` is
        the phase they start from (:data:`PHASE_STARTS`; ``None``: :data:`DEFAULT_PHASE_START`, or
        the network's own phase when ``refine=0``, which is then the pure network output).

        Long mels are synthesised in blocks of ``chunk_frames`` (``None``: :data:`CHUNK_FRAMES`)
        with enough context on each side, and PGHI's phase carried from block to block, so memory
        stays bounded and the result equals synthesising the whole mel at once. ``progress=None``
        shows a progress bar when there is more than one block.
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
        chunk_frames = CHUNK_FRAMES if chunk_frames is None else chunk_frames
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive number of frames, got {chunk_frames!r}")
        if mel.dim() == 2:
            mel = mel[None]
        if mel.dim() != 3 or mel.shape[1] != self.n_mels or mel.shape[-1] == 0:
            raise ValueError(f"mel must be shaped [B, {self.n_mels}, N] with N > 0, got {tuple(mel.shape)}")
        fault = mel_fault(mel)
        if fault is not None:
            raise ValueError(f"mel has {fault}; Vocoder.mel computes one (a dB or log10 mel must be converted)")
        mel = mel.to(self.device, torch.float32)
        return _finite(self._synthesise(mel, refine, start, chunk_frames, progress))

    def _synthesise(self, mel: torch.Tensor, refine: int, start: str, chunk_frames: int,
                    progress: Optional[bool]) -> torch.Tensor:
        c = self.config
        if not (refine == 0 and start == "network") and (c.n_fft != c.mel.n_fft or c.win_length != c.mel.win_length):
            raise ValueError("phase refinement needs the synthesis STFT to equal the mel STFT; "
                             "use refine=0 and start='network' with this model")
        batch, _, frames = mel.shape
        hop = self.hop_length
        # Each refinement iteration (inverse STFT, then STFT) reaches n_fft / hop - 1 frames further:
        # n_fft / hop frames of context per iteration, and once more for the last synthesis, cover it.
        spans = chunk_spans(frames, chunk_frames, c.n_fft // hop * (refine + 1))
        show = len(spans) > 1 if progress is None else progress
        # Random starts are drawn for the whole mel at once (reproducibly), so each block sees what a
        # whole pass would.
        random_phase = None
        if start == "random":
            generator = torch.Generator(self.device).manual_seed(0)
            random_phase = 2 * torch.pi * torch.rand(batch, c.n_fft // 2 + 1, frames, generator=generator,
                                                     device=self.device)
        audio = torch.empty(batch, 1, frames * hop, device=self.device)
        carried: Optional[torch.Tensor] = None
        for index, span in enumerate(tqdm(spans, desc="synthesising", unit="chunk", disable=not show, leave=False)):
            following = spans[index + 1].context_start if index + 1 < len(spans) else 0
            waveform, carried = self._synthesise_block(mel, span, refine, start, carried, following, random_phase)
            kept = waveform[..., span.offset * hop:(span.offset + span.stop - span.start) * hop]
            audio[..., span.start * hop:span.stop * hop] = kept
        return audio

    def _predict(self, mel: torch.Tensor, first: int, stop: int) -> SpectrumPrediction:
        """The network's prediction for mel frames ``[first, stop)``, computed with its full context."""
        reach = self.backbone.receptive_field + self.head.receptive_field
        low, high = max(0, first - reach), min(mel.shape[-1], stop + reach)
        prediction = self(mel[..., low:high])
        keep, hop = slice(first - low, stop - low), self.hop_length
        return SpectrumPrediction(prediction.waveform[..., (first - low) * hop:(stop - low) * hop],
                                  *(getattr(prediction, name)[..., keep]
                                    for name in ("log_amplitude", "phase", "real", "imag")))

    def _synthesise_block(self, mel: torch.Tensor, span: ChunkSpan, refine: int, start: str,
                          carried: Optional[torch.Tensor], following: int, random_phase: Optional[torch.Tensor]
                          ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Waveform of the block's mel frames ``[context_start, context_stop)``, and PGHI's phase of
        frame ``following - 1``, from which the block starting at ``following`` continues (``carried``
        is that phase for this block's frame ``context_start - 1``)."""
        c = self.config
        first, stop = span.context_start, span.context_stop
        before = 1 if first > 0 and start == "pghi" else 0  # PGHI continues from the frame before
        if start == "network" or c.learned_amplitude:
            prediction = self._predict(mel, first - before, stop)
            if refine == 0 and start == "network":
                return prediction.waveform, None
            log_amplitude, network_phase = prediction.log_amplitude, prediction.phase
        else:  # the amplitude is the prior and the phase comes from elsewhere: no network pass needed
            prior = self.frontend.pseudo_inverse(mel[..., first - before:stop])
            log_amplitude, network_phase = prior.clamp(max=AmplitudePhaseHead.max_log_amplitude), None
        next_phase = None
        if start == "pghi":
            state = PhaseState(log_amplitude[..., 0], carried) if before else None
            log_amplitude = log_amplitude[..., before:]
            phase = pghi_phase(log_amplitude, c.win_length, c.hop_length, previous=state)
            if following > 0:
                next_phase = phase[..., following - 1 - first]
        else:
            phase = network_phase if start == "network" else random_phase[..., first:stop]
        target = mel[..., first:stop]
        return self.refiner(torch.exp(log_amplitude), phase, refine, target_log_mel=target), next_phase
