"""On-the-fly training augmentation: speaker variety and recording chains, from libraries made for it.

``data.augment`` in a codec or vocoder recipe (:class:`AugmentConfig`) switches each transform on
with its own probability. The codec reconstructs the augmented signal, so these teach it voices
and recording chains its corpus lacks rather than invariance:

* speed perturbation (tempo and pitch together, as speech recognition uses for speaker variety) is
  applied while the crop is read (:class:`recipes.data.AudioSegmentDataset`), so a crop keeps its
  length whatever the factor;
* pitch shift, seven-band parametric EQ and band limits come from ``audiomentations``;
* room reverberation convolves with a bank of impulse responses that ``pyroomacoustics`` simulates
  once (shoebox rooms of random size and absorption: no data needed);
* background noise is another clip of the corpus (its ambience and effects, chosen by recording-id
  prefix) mixed in at a random SNR;
* gain is drawn over ``±gain_db`` and the result is scaled down if it would clip.

Every draw comes from torch's RNG (one seed per item), so a seeded run is reproducible and each
DataLoader worker draws differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import mix_clips

PEAK = 0.99  # augmented audio is scaled down to this peak rather than clipped


@dataclass
class AugmentConfig:
    """``data.augment``: which transforms run and how strongly (each with its own probability)."""

    enabled: bool = False
    speed_p: float = 0.5
    speed_range: Tuple[float, float] = (0.9, 1.1)  # factor on tempo and pitch together
    pitch_p: float = 0.3
    pitch_semitones: float = 2.0
    eq_p: float = 0.3
    eq_db: float = 8.0  # each of the seven bands within ±eq_db
    band_limit_p: float = 0.3
    lowpass_hz: Tuple[float, float] = (3000.0, 7000.0)
    highpass_hz: Tuple[float, float] = (60.0, 400.0)
    reverb_p: float = 0.2
    rooms: int = 48  # simulated impulse responses in the bank
    noise_p: float = 0.3
    noise_snr_db: Tuple[float, float] = (5.0, 30.0)
    # Recording-id prefixes of the corpus's own ambience and effects that serve as background noise.
    noise_include: List[str] = field(default_factory=lambda: [
        "0ad-data/audio/ambient", "megaglest-data/tilesets", "ufoai-sound/sound/ambience",
        "widelands-data/sound/ambient"])
    gain_p: float = 0.5
    gain_db: float = 15.0

    def __post_init__(self) -> None:
        for name in ("speed_p", "pitch_p", "eq_p", "band_limit_p", "reverb_p", "noise_p", "gain_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.augment.{name} must lie in [0, 1], got {value}")
        for name in ("speed_range", "lowpass_hz", "highpass_hz", "noise_snr_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"data.augment.{name} must be (low, high), got {(low, high)}")
        if not (0.5 <= self.speed_range[0] and self.speed_range[1] <= 2.0):
            raise ValueError(f"data.augment.speed_range must lie within [0.5, 2], got {self.speed_range}")
        if self.rooms < 1 or self.pitch_semitones < 0 or self.eq_db < 0 or self.gain_db < 0:
            raise ValueError("data.augment: rooms must be >= 1 and pitch_semitones, eq_db, gain_db >= 0")


def require(module: str) -> Any:
    """Import an augmentation library, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"data.augment needs {module}: pip install 'grvq-toolkit[train]' "
                          f"(or ./setup.sh test)") from None


def draw(low: float, high: float) -> float:
    """A uniform draw from torch's RNG (seeded by Lightning, per DataLoader worker)."""
    return low + (high - low) * float(torch.rand(()))


def chance(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def draw_speed(config: AugmentConfig) -> float:
    """The speed factor for one crop (1.0 when augmentation or speed perturbation is off)."""
    if not config.enabled or not chance(config.speed_p):
        return 1.0
    return draw(*config.speed_range)


def room_impulse_responses(count: int, sample_rate: int, seed: int = 0,
                           max_seconds: float = 0.6) -> List[np.ndarray]:
    """``count`` impulse responses of simulated shoebox rooms (image source method, pyroomacoustics),
    each normalised to a unit direct path and cut to ``max_seconds``."""
    pra = require("pyroomacoustics")
    rng = np.random.default_rng(seed)
    responses = []
    while len(responses) < count:
        size = rng.uniform([3.0, 3.0, 2.4], [12.0, 10.0, 4.0])
        absorption = rng.uniform(0.15, 0.7)
        room = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption), max_order=12)
        source, microphone = (rng.uniform(0.5, size - 0.5) for _ in range(2))
        room.add_source(source)
        room.add_microphone(microphone)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)[: int(max_seconds * sample_rate)]
        peak = np.abs(rir).max()
        if np.isfinite(peak) and peak > 0:
            responses.append(rir / peak)
    return responses


class AugmentedDataset(Dataset):
    """Applies :class:`AugmentConfig`'s effects chain to ``dataset``'s items (``{"audio": [1, T],
    "num_samples", ...}``), keeping their length; speed perturbation is the dataset's own (see above).

    ``noise`` is a dataset of background clips of the same length (or None: no noise mixing).
    """

    def __init__(self, dataset: Dataset, config: AugmentConfig, sample_rate: int,
                 noise: Optional[Dataset] = None, seed: int = 0) -> None:
        A = require("audiomentations")
        self.dataset, self.config, self.sample_rate, self.noise = dataset, config, sample_rate, noise
        nyquist = sample_rate / 2
        self.pitch = A.PitchShift(-config.pitch_semitones, config.pitch_semitones, p=1.0)
        self.eq = A.SevenBandParametricEQ(-config.eq_db, config.eq_db, p=1.0)
        self.lowpass = A.LowPassFilter(min(config.lowpass_hz[0], nyquist * 0.9),
                                       min(config.lowpass_hz[1], nyquist * 0.95), p=1.0)
        self.highpass = A.HighPassFilter(*config.highpass_hz, p=1.0)
        self.rooms = room_impulse_responses(config.rooms, sample_rate, seed) if config.reverb_p > 0 else []

    def __len__(self) -> int:
        return len(self.dataset)

    def _seed_library(self) -> None:
        # audiomentations draws from Python's and numpy's global RNGs: seed both from torch's.
        seed = int(torch.randint(0, 2 ** 31 - 1, ()))
        random.seed(seed)
        np.random.seed(seed)

    def _reverb(self, audio: np.ndarray) -> np.ndarray:
        from scipy.signal import fftconvolve

        rir = self.rooms[int(torch.randint(len(self.rooms), ()))]
        wet = fftconvolve(audio, rir)[: audio.shape[-1]].astype(np.float32)
        dry_rms, wet_rms = np.sqrt(np.mean(audio ** 2)), np.sqrt(np.mean(wet ** 2))
        return wet * (dry_rms / wet_rms) if wet_rms > 0 else audio

    def augment(self, audio: torch.Tensor, valid: int) -> torch.Tensor:
        """The effects chain on one ``[1, T]`` crop whose first ``valid`` samples are real."""
        config = self.config
        x = audio[0, :valid].numpy().astype(np.float32)
        if valid < self.sample_rate // 20:  # too short for the filters to mean anything
            return audio
        self._seed_library()
        if chance(config.pitch_p):
            x = self.pitch(x, self.sample_rate)
        if chance(config.eq_p):
            x = self.eq(x, self.sample_rate)
        if chance(config.band_limit_p):
            x = self.lowpass(x, self.sample_rate)
            x = self.highpass(x, self.sample_rate) if chance(0.5) else x
        if self.rooms and chance(config.reverb_p):
            x = self._reverb(x)
        out = torch.zeros_like(audio)
        out[0, :valid] = torch.from_numpy(np.ascontiguousarray(x[:valid], dtype=np.float32))
        if self.noise is not None and len(self.noise) > 0 and chance(config.noise_p):
            background = self.noise[int(torch.randint(len(self.noise), ()))]["audio"]
            out[:, :valid] = mix_clips(out[:, :valid], background[:, :valid], draw(*config.noise_snr_db), PEAK)
        if chance(config.gain_p):
            out = out * 10.0 ** (draw(-config.gain_db, config.gain_db) / 20.0)
        top = float(out.abs().max())
        if top > PEAK:
            out = out * (PEAK / top)
        if not torch.isfinite(out).all():  # a filter on a pathological clip: keep the clean crop
            return audio
        return out

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = dict(self.dataset[index])
        item["audio"] = self.augment(item["audio"], int(item["num_samples"]))
        return item


def augment_summary(config: AugmentConfig) -> str:
    """One line naming the transforms that are on, for logs."""
    if not config.enabled:
        return "augmentation off"
    parts: Sequence[Tuple[str, float]] = (("speed", config.speed_p), ("pitch", config.pitch_p), ("eq", config.eq_p),
                                          ("band limits", config.band_limit_p), ("reverb", config.reverb_p),
                                          ("noise", config.noise_p), ("gain", config.gain_p))
    return "augmentation: " + ", ".join(f"{name} p={p:g}" for name, p in parts if p > 0)
