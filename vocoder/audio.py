"""Audio input and output: reading, validating, down-mixing and resampling waveforms.

Every public entry point of the toolkit that accepts audio goes through :func:`prepare_waveform`
(in-memory arrays) or :func:`load_audio` (files), so bad input fails here with one clear
:class:`AudioError` instead of deep inside a convolution.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

ArrayLike = Union[torch.Tensor, np.ndarray]

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64  # a 2-D array's channel axis is the shorter one and holds at most this many


class AudioError(ValueError):
    """Raised for audio that cannot be used: empty, non-finite, wrongly shaped or unreadable."""


def check_sample_rate(sample_rate: int) -> int:
    """Return ``sample_rate`` as an int, or raise :class:`AudioError` if it is not a plausible rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if isinstance(sample_rate, float) and sample_rate.is_integer():
            sample_rate = int(sample_rate)
        else:
            raise AudioError(f"sample rate must be an integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"unsupported sample rate {sample_rate} Hz (expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})"
        )
    return sample_rate


def _channels_first(wav: torch.Tensor) -> torch.Tensor:
    """``[C, T]`` from a 2-D array in either layout: ``[C, T]`` (torch, torchaudio) or ``[T, C]``
    (``soundfile.read``, scipy). The shorter axis is the channel axis, which must hold at most
    :data:`MAX_CHANNELS`; a square array is ambiguous and rejected."""
    rows, cols = wav.shape
    if rows == cols and rows > 1:
        raise AudioError(f"ambiguous audio layout {tuple(wav.shape)}: pass [1, T] or [T] for mono, or a 3-D "
                         f"[B, C, T] array, so that channels and time are explicit")
    channels = min(rows, cols)
    if channels > MAX_CHANNELS:
        raise AudioError(f"audio shaped {tuple(wav.shape)} has no axis of at most {MAX_CHANNELS} channels; "
                         f"pass [C, T] or [T, C]")
    return wav if rows <= cols else wav.T


def _pcm_to_float(wav: np.ndarray) -> np.ndarray:
    """Integer PCM as float32 in [-1, 1]; unsigned PCM (8-bit WAV) is centred on its midpoint."""
    info = np.iinfo(wav.dtype)
    if wav.dtype.kind == "u":  # silence is the midpoint (128 for 8 bits), not zero
        middle = float(info.max // 2 + 1)
        return ((wav.astype(np.float64) - middle) / middle).astype(np.float32)
    return wav.astype(np.float32) / float(info.max)


def as_batch(wav: ArrayLike) -> torch.Tensor:
    """Turn audio into a float32 tensor ``[B, C, T]``, validated. Accepted: ``[T]``; ``[C, T]`` or
    ``[T, C]`` (the shorter axis is taken as channels, as ``soundfile.read`` returns ``[T, C]``);
    ``[B, C, T]`` (explicit, taken as is). Integer PCM (arrays or tensors) is scaled to [-1, 1]."""
    if isinstance(wav, np.ndarray):
        if wav.dtype.kind not in "fiu":
            raise AudioError(f"audio must be numeric, got dtype {wav.dtype}")
        if wav.dtype.kind in "iu":
            wav = _pcm_to_float(wav)
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"audio must be a torch.Tensor or numpy array, got {type(wav).__name__}")
    if wav.is_complex() or wav.dtype == torch.bool:
        raise AudioError(f"audio must be real-valued, got dtype {wav.dtype}")
    if not wav.is_floating_point():  # integer PCM in a tensor: scaled as in an array
        wav = torch.from_numpy(_pcm_to_float(wav.cpu().numpy())).to(wav.device)
    if wav.dim() == 1:
        wav = wav[None, None]
    elif wav.dim() == 2:
        wav = _channels_first(wav)[None]
    elif wav.dim() != 3:
        raise AudioError(f"audio must be shaped [T], [C, T] or [B, C, T], got {tuple(wav.shape)}")
    wav = wav.float()
    if wav.shape[0] == 0 or wav.shape[1] == 0 or wav.shape[-1] == 0:
        raise AudioError(f"audio is empty (shape {tuple(wav.shape)})")
    if not torch.isfinite(wav).all():
        raise AudioError("audio contains NaN or infinite samples")
    return wav


# torchaudio's windowed-sinc kernel has one phase per step of the reduced ratio, so its size and
# time grow with the reduced rates (22,049 -> 16,000 Hz needs gigabytes); above this bound, soxr.
MAX_REDUCED_RATE = 2_000


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Band-limited resampling along the last axis (identity when the rates match).

    Ratios that reduce to small integers (every common rate: 8, 11.025, 22.05, 24, 32, 44.1, 48,
    96 kHz to 16 kHz) use torchaudio's exact windowed-sinc filter on the tensor's own device;
    any other ratio uses libsoxr (``soxr``, high quality) on the CPU, in bounded time and memory.
    """
    if from_rate == to_rate:
        return wav
    g = math.gcd(from_rate, to_rate)
    if max(from_rate, to_rate) // g <= MAX_REDUCED_RATE:
        return AF.resample(wav, from_rate // g, to_rate // g)
    import soxr

    flat = wav.detach().reshape(-1, wav.shape[-1]).to("cpu", torch.float32).numpy()
    out = soxr.resample(np.ascontiguousarray(flat.T), from_rate, to_rate, quality="HQ").T
    out = torch.from_numpy(np.ascontiguousarray(out)).reshape(*wav.shape[:-1], -1)
    return out.to(wav.device, wav.dtype)


def prepare_waveform(wav: ArrayLike, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Validate, down-mix to mono and resample: returns float32 ``[B, 1, T]`` at ``target_rate``."""
    sample_rate = check_sample_rate(sample_rate)
    wav = as_batch(wav)
    wav = wav.mean(dim=1, keepdim=True)
    return resample(wav, sample_rate, target_rate)


def load_audio(path: Union[str, Path]) -> tuple[torch.Tensor, int]:
    """Read any file libsndfile understands; returns float32 ``[C, T]`` and its sample rate."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"no such audio file: {path}")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"cannot read {path} as audio: {err}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path} contains no samples")
    wav = torch.from_numpy(data.T.copy())
    check_sample_rate(sample_rate)
    if not torch.isfinite(wav).all():
        raise AudioError(f"{path} contains NaN or infinite samples")
    return wav, int(sample_rate)


def save_audio(path: Union[str, Path], wav: ArrayLike, sample_rate: int) -> None:
    """Write ``[T]`` or ``[C, T]`` audio (float in [-1, 1]); the format follows the file extension."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 3:
        if wav.shape[0] != 1:
            raise AudioError("save_audio writes one item at a time; got a batch of several")
        wav = wav[0]
    if wav.ndim == 1:
        wav = wav[None]
    sf.write(str(path), np.clip(wav, -1.0, 1.0).T, int(sample_rate))


# ------------------------------------------------------------- corpus preparation (trim, level, cut)

SILENCE_FLOOR_DB = -70.0  # frames quieter than this are silence whatever the recording's level


def db(value: float) -> float:
    return 20.0 * math.log10(max(value, 1e-12))


def frame_rms(wav: torch.Tensor, frame: int) -> torch.Tensor:
    """RMS of consecutive ``frame``-sample frames of mono ``[1, T]`` audio (last frame zero-padded)."""
    padded = torch.nn.functional.pad(wav[0], (0, (-wav.shape[-1]) % frame))
    return padded.view(-1, frame).pow(2).mean(dim=1).sqrt()


def trim_silence(wav: torch.Tensor, sample_rate: int, threshold_db: float = -40.0,
                 frame_seconds: float = 0.01) -> torch.Tensor:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the loudest frame.

    One frame of margin is kept on each side so attacks and decays are not clipped. Returns an
    empty ``[1, 0]`` tensor when the whole clip is below the absolute silence floor (-70 dBFS).
    """
    frame = max(1, int(round(frame_seconds * sample_rate)))
    levels = frame_rms(wav, frame)
    loudest = float(levels.max())
    threshold = max(db(loudest) + threshold_db, SILENCE_FLOOR_DB)
    active = torch.nonzero(20.0 * torch.log10(levels.clamp_min(1e-12)) > threshold).flatten()
    if active.numel() == 0:
        return wav[:, :0]
    start = max(0, int(active[0]) - 1) * frame
    end = min(wav.shape[-1], (int(active[-1]) + 2) * frame)
    return wav[:, start:end]


CORPUS_RMS_DB = -20.0  # the training corpus's level (recipes.prepare_data), and generated audio's by default
CORPUS_PEAK = 0.95


def normalize_loudness(wav: torch.Tensor, target_rms_db: float = CORPUS_RMS_DB, peak: float = CORPUS_PEAK) -> torch.Tensor:
    """Scale to ``target_rms_db`` dBFS RMS, or less if that would push the peak above ``peak``."""
    rms = float(wav.pow(2).mean().sqrt())
    top = float(wav.abs().max())
    if rms <= 0:
        return wav
    gain = min(10.0 ** (target_rms_db / 20.0) / rms, peak / top)
    return wav * gain


LEVEL_GAIN_LIMIT_DB = 60.0  # a near-silent signal is not raised by more than this


def level_gains(wav: torch.Tensor, target_rms_db: float = CORPUS_RMS_DB, step_db: float = 0.01) -> torch.Tensor:
    """Per signal of ``[B, C, T]``, the gain in dB (a multiple of ``step_db``, within
    ±:data:`LEVEL_GAIN_LIMIT_DB`) that brings its RMS to ``target_rms_db``; 0 for digital silence."""
    rms = wav.double().pow(2).mean(dim=tuple(range(1, wav.dim()))).sqrt()
    gains = target_rms_db - 20.0 * torch.log10(rms.clamp_min(1e-12))
    gains = torch.where(rms > 0, gains.clamp(-LEVEL_GAIN_LIMIT_DB, LEVEL_GAIN_LIMIT_DB), torch.zeros_like(gains))
    return torch.round(gains / step_db) * step_db


def apply_gains(wav: torch.Tensor, gains_db: torch.Tensor) -> torch.Tensor:
    """``wav [B, ...]`` with each signal scaled by its gain in dB."""
    scale = torch.pow(10.0, gains_db.double() / 20.0).to(wav.dtype)
    return wav * scale.reshape(-1, *([1] * (wav.dim() - 1)))


def split_segments(wav: torch.Tensor, max_samples: int, min_samples: int) -> List[torch.Tensor]:
    """Cut ``[1, T]`` into the fewest equal pieces of at most ``max_samples``; drops pieces under ``min_samples``."""
    total = wav.shape[-1]
    count = max(1, math.ceil(total / max_samples))
    length = math.ceil(total / count)
    pieces = [wav[:, i:i + length] for i in range(0, total, length)]
    return [p for p in pieces if p.shape[-1] >= min_samples]
