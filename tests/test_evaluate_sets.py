"""The evaluation's helpers: delay compensation and the input-level sweep."""

from __future__ import annotations

import torch

from recipes.evaluate import LEVEL_PEAK, align
from vocoder.audio import normalize_loudness


def test_align_removes_a_codec_delay_either_way():
    torch.manual_seed(0)
    reference = torch.randn(1, 8000)
    for lag in (0, 37, -21, 400):
        shifted = torch.roll(reference, lag, dims=-1)
        aligned = align(reference, shifted)
        assert aligned.shape == reference.shape
        inner = slice(500, 7500)
        assert torch.allclose(aligned[..., inner], reference[..., inner])


def test_the_level_sweep_hits_the_rms_unless_the_peak_would_pass_the_limit():
    t = torch.arange(16000) / 16000
    tone = 0.1 * torch.sin(2 * torch.pi * 200 * t)[None]
    quiet = normalize_loudness(tone, -35.0, LEVEL_PEAK)
    assert abs(20 * torch.log10(quiet.pow(2).mean().sqrt()) + 35.0) < 0.01
    loud = normalize_loudness(tone, -1.0, LEVEL_PEAK)  # a sine at -1 dBFS RMS peaks at +2 dBFS: limited
    assert loud.abs().max() <= 0.99 + 1e-6


def test_a_missing_metric_package_is_said_not_skipped(monkeypatch):
    import sys

    import pytest

    from vocoder.metrics import MetricUnavailable, optional_metric, pesq_wideband

    monkeypatch.setitem(sys.modules, "pesq", None)  # as if not installed: importing it raises
    speech = torch.randn(1, 16000) * 0.1
    with pytest.raises(MetricUnavailable, match="pip install pesq"):
        optional_metric(pesq_wideband, speech, speech, 16000)
    # A metric that fails on its input (a silent clip) still just does not count.
    assert optional_metric(lambda *a: 1 / 0, speech) is None


def test_a_speech_recipe_without_its_metric_packages_fails_before_training(monkeypatch):
    import sys

    import pytest

    from recipes.codec_module import CodecModule
    from recipes.config import RecipeConfigError, load_recipe_config

    monkeypatch.setitem(sys.modules, "pystoi", None)
    config = load_recipe_config("codec", smoke=True, overrides=["data.speech=true"])
    with pytest.raises(RecipeConfigError, match="pystoi"):
        CodecModule(config)
