"""One class per codec design behind the one Codec interface: saving and loading each, the shipped
model, configs saved in the flat form of a single Codec class, and fingerprints that never move."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from codec import (ChunkConfig, Codec, CodecConfig, SpectralCodec, SpectralCodecConfig, WaveformCodec,
                   WaveformCodecConfig, read_saved_codec)
from codec.config import codec_config_from_dict
from codec.legacy import UNUSED_DEFAULTS
from codec.training import CodecLoss, SpectralCodecLoss, WaveformCodecLoss
from vocoder.checkpoint import CheckpointError

LEGACY = Path(__file__).parent / "fixtures" / "legacy_codec"
SR = 16_000


def tiny(design: type, seed: int) -> Codec:
    torch.manual_seed(seed)
    return design(design.config_class.tiny()).eval()


@pytest.mark.parametrize("design", [SpectralCodec, WaveformCodec])
def test_each_design_round_trips_save_and_load(design, tmp_path):
    model = tiny(design, 0)
    folder = model.save_pretrained(tmp_path / "m")
    payload = json.loads((folder / "config.json").read_text())
    assert payload["class"] == design.__name__ and "kind" not in payload["config"] and "legacy_fields" not in payload
    for loader in (Codec, design):
        loaded = loader.from_pretrained(folder)
        assert type(loaded) is design and loaded.config == model.config
        assert loaded.fingerprint() == model.fingerprint()
    wav = torch.randn(1, SR // 2) * 0.1
    assert torch.equal(loaded.encode(wav, SR), model.encode(wav, SR))
    other = WaveformCodec if design is SpectralCodec else SpectralCodec
    with pytest.raises(CheckpointError, match=f"holds a {design.__name__}, not a {other.__name__}"):
        other.from_pretrained(folder)
    with pytest.raises(CheckpointError, match=f"holds a {design.__name__}, not a {other.__name__}"):
        tiny(other, 0).load_weights_from(folder)


def test_codec_builds_the_design_of_its_config():
    assert type(Codec(SpectralCodecConfig.tiny())) is SpectralCodec
    assert type(Codec(WaveformCodecConfig.tiny())) is WaveformCodec
    with pytest.raises(TypeError, match="SpectralCodecConfig or a WaveformCodecConfig"):
        Codec(None)
    with pytest.raises(TypeError, match="WaveformCodec takes a WaveformCodecConfig"):
        WaveformCodec(SpectralCodecConfig.tiny())
    with pytest.raises(TypeError, match="base"):
        CodecConfig()
    assert isinstance(CodecLoss.for_config(SpectralCodecConfig.tiny()), SpectralCodecLoss)
    assert isinstance(CodecLoss.for_config(WaveformCodecConfig.tiny()), WaveformCodecLoss)
    assert not SpectralCodec.adversarial_training and WaveformCodec.adversarial_training


def test_hop_length_is_the_samples_per_code_frame_in_both_designs():
    spectral, waveform = SpectralCodecConfig(), WaveformCodecConfig()
    assert spectral.hop_length == spectral.vocoder.hop_length * spectral.spectral.downsample == 320
    assert waveform.hop_length == 8 * 5 * 4 * 2 == 320
    assert (spectral.frame_rate, waveform.frame_rate) == (50.0, 50.0)
    assert WaveformCodecConfig.for_24khz().hop_length == 240


def test_a_recipe_model_section_names_its_design():
    assert codec_config_from_dict({}) == SpectralCodecConfig()
    assert codec_config_from_dict({"kind": "waveform", "decoder": "conv"}) == WaveformCodecConfig(decoder="conv")
    with pytest.raises(CheckpointError, match="unknown SpectralCodecConfig fields"):
        codec_config_from_dict({"encoder_filters": 8})  # a waveform field in the spectral design
    with pytest.raises(CheckpointError, match="kind must be one of"):
        codec_config_from_dict({"kind": "mel"})


def test_the_shipped_codec_loads_as_a_spectral_codec_from_its_flat_config():
    assert json.loads((Codec.default_pretrained / "config.json").read_text())["class"] == "Codec"
    codec = SpectralCodec.from_pretrained()
    assert type(codec) is SpectralCodec and type(Codec.from_pretrained()) is SpectralCodec
    assert codec.legacy_fields is None  # its unused flat fields are the defaults
    assert codec.fingerprint().hex() == "e5449910126a81d0"
    with pytest.raises(CheckpointError, match="no shipped WaveformCodec"):
        WaveformCodec.from_pretrained()


def legacy_folder(tmp_path: Path, name: str, design: type, seed: int) -> Path:
    """A saved codec whose config.json is the fixture ``name`` (flat form, class Codec)."""
    folder = tiny(design, seed).save_pretrained(tmp_path / name)
    shutil.copyfile(LEGACY / f"{name}.json", folder / "config.json")
    return folder


# Computed by the code of commit 89bd482 (one Codec class) from the same files and seeds.
@pytest.mark.parametrize("name, design, seed, fingerprint, earlier", [
    ("waveform", WaveformCodec, 0, "fe7a61a82f1cacd8", "046574f656c6f64e"),
    ("spectral", SpectralCodec, 1, "7febff961b48ee1b", "7a4b1f0a8e19a6fe"),
])
def test_flat_configs_of_both_kinds_load_with_their_fingerprints(tmp_path, name, design, seed, fingerprint, earlier):
    flat = json.loads((LEGACY / f"{name}.json").read_text())["config"]
    folder = legacy_folder(tmp_path, name, design, seed)
    model = Codec.from_pretrained(folder)
    assert type(model) is design and model.config == design.config_class.tiny()
    assert json.dumps(model.flat_config(), sort_keys=True) == json.dumps(flat, sort_keys=True)
    assert model.legacy_fields is not None  # tiny() filled the other design's fields otherwise than the defaults
    assert model.fingerprint().hex() == fingerprint
    assert model.matches_fingerprint(bytes.fromhex(earlier))
    # Saved again in its design's form, it keeps the fields its fingerprint hashes.
    again = Codec.from_pretrained(model.save_pretrained(tmp_path / f"{name}-again"))
    assert again.legacy_fields == model.legacy_fields and again.fingerprint().hex() == fingerprint
    # A warm start from it keeps them too (the weights, and so the codes, are the saved model's).
    fresh = design(replace(model.config, chunking=ChunkConfig(frames=7)))
    fresh.load_weights_from(folder)
    assert fresh.fingerprint().hex() == fingerprint


def test_a_flat_config_from_before_the_spectral_design_is_a_waveform_codec(tmp_path):
    folder = legacy_folder(tmp_path, "waveform_before_kind", WaveformCodec, 0)
    model = Codec.from_pretrained(folder)
    assert type(model) is WaveformCodec and model.config == WaveformCodecConfig.tiny()
    assert "kind" not in model.flat_config() and "vocoder" not in model.flat_config()
    assert model.matches_fingerprint(bytes.fromhex("c2e870e247b6e32d"))  # what its streams carried


def test_a_model_built_now_hashes_the_flat_defaults():
    for design in (SpectralCodec, WaveformCodec):
        model = tiny(design, 0)
        flat = model.flat_config()
        assert {k: flat[k] for k in UNUSED_DEFAULTS[design.config_class]} == UNUSED_DEFAULTS[design.config_class]
        assert flat["sample_rate"] == SR


def test_flat_configs_are_checked(tmp_path):
    folder = legacy_folder(tmp_path, "spectral", SpectralCodec, 1)
    payload = json.loads((folder / "config.json").read_text())
    for edit, message in [(lambda c: c.update(kind="mel"), "kind must be one of"),
                          (lambda c: c.update(colour="red"), "unknown codec config fields"),
                          (lambda c: c.update(sample_rate=24_000), "must equal"),
                          (lambda c: c.update(encoder_filters="four"), "expected an integer")]:
        broken = json.loads(json.dumps(payload))
        edit(broken["config"])
        (folder / "config.json").write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match=message):
            read_saved_codec(folder)
