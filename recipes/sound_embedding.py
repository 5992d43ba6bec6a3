"""Sound-effect embeddings for evaluating generated audio: aiSFX (Ma & Lerch, ISMIR 2022).

The PyPI wheel ``aisfx`` (MIT) ships a CNN trained to classify professional sound-effect libraries;
its 512-d penultimate features serve here as the embedding space of the text-to-audio report
(retrieval score, Fréchet distance, continuation). Install it with ``pip install --no-deps aisfx``:
its declared pins (numpy 1.23, librosa 0.9) do not install beside torch 2.9, and none of them is
needed, because this module computes the spectrogram itself and loads only the network definition
file and the packaged weights (through the restricted ``weights_only`` unpickler, allowing the few
numpy scalar types the checkpoint stores).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torchaudio

from vocoder.audio import resample

SAMPLE_RATE = 44_100
N_FFT, HOP = 2048, 1024  # aiSFX's spectrogram: 96 HTK mel bands up to 22.05 kHz, log10(1 + 10^4 power)
N_MELS = 96
BLOCK = 100  # frames per embedding block (about 2.3 s), blocks overlap by half
LOG_MAX = 9.457798957824707  # aiSFX's min-max normalisation over its training spectrograms


class EmbeddingUnavailable(RuntimeError):
    """The ``aisfx`` package is not installed."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec("aisfx")  # locates the package without running its __init__ (which needs librosa)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable("sound embeddings need the aisfx package: pip install --no-deps aisfx")
    return Path(list(spec.submodule_search_locations)[0])


def _load_network() -> torch.nn.Module:
    package = _package_dir()
    spec = importlib.util.spec_from_file_location("_aisfx_cnn2d", package / "models" / "cnn2d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    allowed = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype,
               np.dtypes.Int64DType, np.dtypes.Float64DType, np.dtypes.Float32DType]
    with torch.serialization.safe_globals(allowed):
        weights, _ = torch.load(package / "models" / "checkpoint.pth", map_location="cpu", weights_only=True)
    network = module.EmbeddingNet("max", 3, 1, 64)
    prefix = "embedding_net."
    network.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    return network.eval().requires_grad_(False)


class SoundEmbedder:
    """Unit-norm 512-d embeddings of mono clips at any sample rate (the mean over 2.3 s blocks)."""

    def __init__(self) -> None:
        self.network = _load_network()
        banks = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE,
                                                      norm=None, mel_scale="htk")
        self.filters = banks / banks.sum(dim=0, keepdim=True).clamp_min(1e-12)  # unit-area bands, as aiSFX's
        self.window = torch.hann_window(N_FFT)

    def spectrogram(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Normalised log-mel ``[frames, 96]`` of a 1-D clip."""
        audio = resample(audio.reshape(1, -1).float(), sample_rate, SAMPLE_RATE)[0]
        audio = audio / audio.abs().max().clamp_min(1e-8)  # aiSFX peak-normalises every clip
        power = torch.stft(audio, N_FFT, HOP, window=self.window, center=True, pad_mode="constant",
                           return_complex=True).abs().square()
        return torch.log10(power.T @ self.filters * 1e4 + 1) / LOG_MAX

    @torch.no_grad()
    def embed(self, clips: Sequence[Union[torch.Tensor, np.ndarray]], sample_rate: int) -> torch.Tensor:
        """``[N, 512]`` unit vectors for ``N`` clips (1-D, or ``[1, T]``); short clips are zero-padded."""
        rows = []
        for clip in clips:
            spec = self.spectrogram(torch.as_tensor(clip), sample_rate)
            if spec.shape[0] < BLOCK:
                spec = torch.nn.functional.pad(spec, (0, 0, 0, BLOCK - spec.shape[0]))
            blocks = spec.unfold(0, BLOCK, BLOCK // 2).transpose(1, 2)  # [blocks, BLOCK, mels]
            rows.append(self.network(blocks).mean(dim=0))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def retrieval_rate(queries: torch.Tensor, query_labels: Sequence[int], references: torch.Tensor,
                   reference_labels: Sequence[int], leave_one_out: bool = False) -> float:
    """How often a query embedding is nearest (cosine) to the centroid of its own label's references.

    Both sets are first centred on the references' mean: every sound shares one direction of the
    embedding space, which otherwise makes a few references nearest to everything (hubness).
    ``leave_one_out`` scores the references themselves: each is left out of its own centroid.
    """
    mean = references.mean(dim=0)
    references = torch.nn.functional.normalize(references - mean, dim=-1)
    queries = torch.nn.functional.normalize(queries - mean, dim=-1)
    labels = torch.as_tensor(list(reference_labels))
    query_labels = torch.as_tensor(list(query_labels))
    num = int(labels.max()) + 1
    sums = torch.zeros(num, references.shape[1]).index_add_(0, labels, references)
    counts = torch.bincount(labels, minlength=num).float()
    hits = 0
    for i, (query, label) in enumerate(zip(queries, query_labels.tolist())):
        s, c = sums.clone(), counts.clone()
        if leave_one_out:
            s[label] -= references[i]
            c[label] -= 1
        centroids = torch.nn.functional.normalize(s / c.clamp_min(1)[:, None], dim=-1)
        similarity = centroids @ query
        similarity[c == 0] = -2.0  # a label with no reference left cannot be chosen
        hits += int(similarity.argmax()) == label
    return hits / len(queries)


def wilson_interval(rate: float, trials: int, z: float = 1.96) -> Tuple[float, float]:
    """The Wilson score interval (95 % for ``z`` = 1.96) of a success rate seen in ``trials`` trials:
    how far a retrieval or continuation rate measured on a handful of clips can be trusted."""
    if trials < 1 or not 0.0 <= rate <= 1.0:
        raise ValueError(f"need trials >= 1 and a rate in [0, 1], got {trials} and {rate}")
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings ``[N, D]``."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()  # trace of sqrt(A B)
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)
