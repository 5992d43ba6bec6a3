"""Training augmentation: reproducible for a seed, finite, length-keeping, each transform switchable."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from recipes.augment import AugmentConfig, AugmentedDataset, draw_speed
from recipes.config import RecipeConfigError, load_recipe_config
from recipes.data import AudioSegmentDataset, ManifestEntry, write_manifest

SR = 16_000
ALL_OFF = AugmentConfig(enabled=True, speed_p=0, pitch_p=0, eq_p=0, band_limit_p=0, reverb_p=0, noise_p=0,
                        gain_p=0, rooms=2)


@pytest.fixture()
def corpus(tmp_path):
    """Two speech-like tones and one noise clip, 16 kHz, in a manifest."""
    rng = np.random.default_rng(0)
    entries = []
    for name, seconds, signal in (
        ("voice/a.wav", 3.0, lambda t: 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))),
        ("voice/b.wav", 1.5, lambda t: 0.2 * np.sin(2 * np.pi * 330 * t)),
        ("ambience/wind.wav", 2.5, lambda t: 0.1 * rng.standard_normal(t.shape)),
    ):
        t = np.arange(int(seconds * SR)) / SR
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        sf.write(path, signal(t).astype(np.float32), SR)
        entries.append(ManifestEntry(name, seconds, SR, "src", "a sound", "train", f"src/{name}"))
    write_manifest(tmp_path / "manifest.jsonl", entries)
    return tmp_path / "manifest.jsonl"


def build(manifest, config: AugmentConfig, seconds: float = 1.0):
    speed = (lambda: draw_speed(config)) if config.speed_p > 0 else None
    clips = AudioSegmentDataset(manifest, "train", seconds, SR, exclude=("src/ambience",), speed_factor=speed)
    noise = AudioSegmentDataset(manifest, "train", seconds, SR, include=("src/ambience",))
    return AugmentedDataset(clips, config, SR, noise if config.noise_p > 0 else None, seed=0)


def items(dataset, seed: int):
    torch.manual_seed(seed)
    return [dataset[i]["audio"] for i in range(len(dataset)) for _ in range(3)]


def test_everything_on_is_deterministic_finite_and_keeps_length(corpus):
    config = replace(AugmentConfig(enabled=True, rooms=4), speed_p=1, pitch_p=1, eq_p=1, band_limit_p=1,
                     reverb_p=1, noise_p=1, gain_p=1)
    dataset = build(corpus, config)
    first, again, other = items(dataset, 0), items(dataset, 0), items(dataset, 1)
    for a, b in zip(first, again):
        assert a.shape == (1, SR) and torch.isfinite(a).all() and a.abs().max() <= 0.99 + 1e-6
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_keeps_the_asked_length_and_changes_pitch(corpus, factor):
    plain = AudioSegmentDataset(corpus, "train", 1.0, SR, crop="start")
    fast = AudioSegmentDataset(corpus, "train", 1.0, SR, crop="start", speed_factor=lambda: factor)
    a, b = plain[1], fast[1]  # the 330 Hz tone, 1.5 s long
    assert b["audio"].shape == (1, SR) and b["num_samples"] == SR
    spectrum = torch.fft.rfft(b["audio"][0]).abs()
    assert abs(int(spectrum.argmax()) - 330 * factor) <= 2  # 1 Hz bins
    assert int(torch.fft.rfft(a["audio"][0]).abs().argmax()) == 330


@pytest.mark.parametrize("name", ["speed_p", "pitch_p", "eq_p", "band_limit_p", "reverb_p", "noise_p", "gain_p"])
def test_each_transform_can_be_switched_off_alone(corpus, name):
    """With only ``name`` on the output differs from the input; with everything off it is the input."""
    plain = AudioSegmentDataset(corpus, "train", 1.0, SR, exclude=("src/ambience",))

    def crops(dataset):  # the same crop offsets: one seed per item, drawn before any augmentation
        out = []
        for i in range(2):
            torch.manual_seed(i)
            out.append(dataset[i]["audio"])
        return out

    clean = crops(plain)
    assert all(torch.equal(a, b) for a, b in zip(crops(build(corpus, ALL_OFF)), clean))
    changed = crops(build(corpus, replace(ALL_OFF, **{name: 1.0})))
    assert any(not torch.allclose(c, x, atol=1e-4) for c, x in zip(changed, clean))


def test_disabled_config_is_the_default_and_the_recipe_checks_it():
    assert AugmentConfig().enabled is False
    config = load_recipe_config("codec", overrides=["data.augment.enabled=true", "data.augment.gain_db=6"])
    assert config["data"]["augment"]["enabled"] is True and config["data"]["augment"]["gain_db"] == 6
    with pytest.raises(RecipeConfigError, match="augment"):
        load_recipe_config("codec", overrides=["data.augment.pitch_p=2"])
    with pytest.raises(RecipeConfigError, match="augment"):
        load_recipe_config("codec", overrides=["data.augment.reverb=0.5"])


def test_speed_draws_stay_in_range():
    config = AugmentConfig(enabled=True, speed_p=1.0, speed_range=(0.9, 1.1))
    torch.manual_seed(0)
    factors = [draw_speed(config) for _ in range(200)]
    assert min(factors) >= 0.9 and max(factors) <= 1.1 and len(set(factors)) > 100
    assert draw_speed(replace(config, enabled=False)) == 1.0
    assert not math.isnan(sum(factors))


def test_the_codec_recipes_never_train_on_a_held_out_source(tmp_path):
    """Every source the evaluation holds out is excluded from the training set the recipe builds."""
    from recipes.audio_module import AudioDataModule
    from recipes.evaluate import HELD_OUT_SOURCES, HELD_OUT_SPEECH
    from recipes.config import CONFIG_DIR

    assert all(prefix.split("/")[0] in HELD_OUT_SOURCES for prefixes in HELD_OUT_SPEECH.values() for prefix in prefixes)
    t = np.arange(SR) / SR
    entries = []
    for source in HELD_OUT_SOURCES + ("tuxpaint-stamps-default", "flight-of-the-amazon-queen"):
        for split in ("train", "valid", "test"):
            name = f"{source}/{split}.wav"
            (tmp_path / source).mkdir(exist_ok=True)
            sf.write(tmp_path / name, (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR)
            entries.append(ManifestEntry(name, 1.0, SR, source, "a person speaking", split, f"{source}/x/{split}"))
    write_manifest(tmp_path / "manifest.jsonl", entries)
    for extra in (None, CONFIG_DIR / "codec_spectral.yaml", CONFIG_DIR / "codec_waveform.yaml"):
        config = load_recipe_config("codec", extra, [f"data.manifest={tmp_path / 'manifest.jsonl'}"])
        data = config["data"]
        module = AudioDataModule(sample_rate=SR, **{**data, "valid_split": "valid", "valid_include": None})
        module.setup()
        clips = getattr(module.train_set, "dataset", module.train_set)  # under augmentation
        trained = {e.source for e in clips.entries}
        assert trained == {"tuxpaint-stamps-default", "flight-of-the-amazon-queen"}


def test_a_corpus_without_ambience_trains_without_noise(corpus):
    from recipes.audio_module import AudioDataModule

    data = load_recipe_config("codec", overrides=[f"data.manifest={corpus}", "data.exclude=[]",
                                                  "data.valid_split=train", "data.valid_include=null"])["data"]
    module = AudioDataModule(sample_rate=SR, **data)
    with pytest.warns(UserWarning, match="without background noise"):
        module.setup()
    assert module.train_set.noise is None and len(module.train_set) == 3
