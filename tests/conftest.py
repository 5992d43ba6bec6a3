"""Shared fixtures: small synthetic corpora for recipe tests (real audio is for training, not unit tests)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recipes.data import ManifestEntry, write_manifest

# Tiny test models run many times faster on one thread than with torch's default on a busy 2-core machine.
torch.set_num_threads(1)

CAPTIONS = ["a dog barking", "rain falling", "a bell ringing", "a person speaking"]


def make_corpus(root: Path, clips: int = 6, seconds: float = 1.0, sample_rate: int = 16_000) -> Path:
    """Write ``clips`` short tonal/noisy clips and a manifest with train and valid splits."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i in range(clips):
        wav = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.05 * rng.standard_normal(t.size)
        name = f"clip{i}.wav"
        sf.write(root / name, wav.astype(np.float32), sample_rate)
        split = "valid" if i % 3 == 2 else "train"
        entries.append(ManifestEntry(name, seconds, sample_rate, "synthetic", CAPTIONS[i % len(CAPTIONS)],
                                     split, f"rec{i}"))
    manifest = root / "manifest.jsonl"
    write_manifest(manifest, entries)
    return manifest


@pytest.fixture(scope="session")
def tiny_codec():
    """A seeded tiny waveform codec in eval mode (shared by the bitstream and fuzz tests)."""
    from codec import Codec, WaveformCodecConfig

    torch.manual_seed(0)
    return Codec(WaveformCodecConfig.tiny()).eval()


@pytest.fixture(scope="session")
def tiny_stream(tiny_codec) -> bytes:
    """A .grvq stream of 1 s of noise made by :func:`tiny_codec`."""
    return tiny_codec.compress(0.1 * torch.randn(16_000, generator=torch.Generator().manual_seed(0)), 16_000)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))
