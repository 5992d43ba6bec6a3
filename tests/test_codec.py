"""Codec model: shapes for every input layout, bitrates, code layout, chunking, checkpoints, training."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from codec import ChunkConfig, Codec, CodecConfig, WaveformCodec, WaveformCodecConfig, WaveformCodecOutput
from codec.training import CodecLoss, WaveformCodecLoss
from vocoder.audio import AudioError
from vocoder.checkpoint import CheckpointError
from vocoder.discriminators import DiscriminatorConfig, Discriminators
from vocoder.losses import adversarial_discriminator_loss

SR = 16_000


def signal(seconds: float = 1.5, sample_rate: int = SR, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A chirp with noise, varied enough that an initialised quantizer uses many codes."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    chirp = 0.4 * torch.sin(2 * math.pi * (100 + 1500 * t) * t)
    noise = 0.05 * torch.randn(channels, t.numel(), generator=torch.Generator().manual_seed(seed))
    return chirp + noise


def initialised(config: CodecConfig, seed: int = 0) -> Codec:
    """A random-weight model whose codebooks were k-means initialised by one training-mode pass."""
    torch.manual_seed(seed)
    model = Codec(config)
    model.train()
    with torch.no_grad():
        model(signal(3.0)[None])
    return model.eval()


@pytest.fixture(scope="module")
def model() -> Codec:
    return initialised(WaveformCodecConfig.tiny())


def frames_for(samples: int, hop: int = 320) -> int:
    return math.ceil(samples / hop)


# ------------------------------------------------------------------------------------- config


def test_config_validation_and_properties():
    with pytest.raises(ValueError, match="divisible"):
        WaveformCodecConfig(latent_dim=255)
    with pytest.raises(ValueError, match="multiple of the hop"):
        WaveformCodecConfig(n_fft=1000)
    with pytest.raises(ValueError, match="decoder"):
        WaveformCodecConfig(decoder="wavenet")
    with pytest.raises(TypeError, match="base"):
        CodecConfig()
    config = WaveformCodecConfig()
    assert (config.hop_length, config.frame_rate) == (320, 50.0)
    c24 = WaveformCodecConfig.for_24khz()
    assert (c24.sample_rate, c24.hop_length, c24.frame_rate, c24.n_fft) == (24_000, 240, 100.0, 960)


def test_model_properties(model):
    assert (model.sample_rate, model.frame_rate, model.num_codebooks, model.codebook_size) == (SR, 50.0, 4, 64)
    assert model.bitrate == 50 * 4 * 6  # 64 entries -> 6 bits per code
    assert model.bitrate_for(2) == 50 * 2 * 6
    full = Codec(WaveformCodecConfig.tiny(quantizer=replace(WaveformCodecConfig.tiny().quantizer, codebook_size=1024)))
    assert full.bitrate == 2000.0  # HiFi-Codec's 2 kbps at 4 x 1024, 50 Hz


# ------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "make, sample_rate, batch",
    [
        (lambda: signal(1.0)[0], SR, 1),  # torch [T]
        (lambda: signal(1.0)[0].numpy(), SR, 1),  # numpy [T]
        (lambda: signal(1.0, channels=2), SR, 1),  # torch stereo [C, T]
        (lambda: signal(1.0, channels=2).numpy(), SR, 1),  # numpy stereo [C, T]
        (lambda: torch.stack([signal(1.0, seed=1), signal(1.0, seed=2)]), SR, 2),  # torch [B, C, T]
        (lambda: (signal(1.0)[0].numpy() * 32767).astype(np.int16), SR, 1),  # int16 PCM
        (lambda: signal(1.0, 44_100, channels=2), 44_100, 1),  # other rate, stereo
        (lambda: signal(1.0, 8_000), 8_000, 1),  # upsampled
    ],
)
def test_every_input_layout(model, make, sample_rate, batch):
    wav = make()
    samples = math.ceil(wav.shape[-1] * SR / sample_rate)
    codes = model.encode(wav, sample_rate)
    assert codes.dtype == torch.long and codes.shape == (batch, 4, frames_for(samples))
    assert not codes.is_inference()  # usable as training data for other models
    assert 0 <= int(codes.min()) and int(codes.max()) < model.codebook_size
    audio = model.decode(codes)
    assert audio.dtype == torch.float32 and audio.shape == (batch, 1, codes.shape[-1] * 320)
    assert not audio.is_inference() and not audio.requires_grad
    assert torch.isfinite(audio).all()


def test_bad_audio_is_rejected(model):
    with pytest.raises(AudioError):
        model.encode(torch.zeros(0), SR)
    with pytest.raises(AudioError):
        model.encode(torch.tensor([0.0, float("nan"), 0.0]), SR)
    with pytest.raises(AudioError):
        model.encode(signal(0.1), 10)
    with pytest.raises(AudioError):
        model.encode(torch.zeros(1, 1, 1, 100), SR)


# ------------------------------------------------------------------------------------- bitrates and code layout


def test_bitrates_and_prefix_property(model):
    wav = signal(1.0)
    full = model.encode(wav, SR)
    coarse = model.encode(wav, SR, num_codebooks=2)
    assert coarse.shape == (1, 2, full.shape[-1])
    assert torch.equal(coarse, full[:, :2])  # residual VQ: the coarse codes do not depend on the fine ones
    assert len(torch.unique(full)) > 4  # an initialised quantizer uses many entries
    low, high = model.decode(coarse), model.decode(full)
    assert low.shape == high.shape and not torch.allclose(low, high)
    assert model.allowed_num_codebooks == [2, 4]
    assert model.bitrate_for(2) == model.bitrate / 2


@pytest.mark.parametrize("bad", [0, 1, 3, 5, 6, -2, 2.0, True, "4"])
def test_invalid_num_codebooks(model, bad):
    with pytest.raises(ValueError, match="num_codebooks"):
        model.encode(signal(0.2), SR, num_codebooks=bad)
    with pytest.raises(ValueError, match="num_codebooks"):
        model.compress(signal(0.2), SR, num_codebooks=bad)


def test_level_major_code_layout(model):
    """Codes (g0,l0),(g1,l0),(g0,l1),(g1,l1): decoding the first two is a lookup in level 0 of each group."""
    codes = torch.randint(0, model.codebook_size, (2, 4, 9))
    books = model.quantizer.codebook_weights()  # (group, level) order: g0l0, g0l1, g1l0, g1l1
    levels = model.config.quantizer.levels
    book = lambda g, l: books[g * levels + l]  # noqa: E731
    coarse = model.quantizer.decode(codes[:, :2])
    expected = torch.cat([book(0, 0)[codes[:, 0]], book(1, 0)[codes[:, 1]]], dim=-1).transpose(1, 2)
    torch.testing.assert_close(coarse, expected)
    fine = model.quantizer.decode(codes)
    expected = torch.cat([book(0, 0)[codes[:, 0]] + book(0, 1)[codes[:, 2]],
                          book(1, 0)[codes[:, 1]] + book(1, 1)[codes[:, 3]]], dim=-1).transpose(1, 2)
    torch.testing.assert_close(fine, expected)


def test_decode_matches_the_library(model):
    """The lookup-and-sum decoder equals GroupedResidualVQ.get_output_from_indices, at every bitrate."""
    codes = torch.randint(0, model.codebook_size, (2, 4, 9))
    groups, levels = model.config.quantizer.groups, model.config.quantizer.levels
    for count in (2, 4):
        indices = torch.full((2, groups * levels, 9), -1)  # -1: level not used
        indices[:, :count] = codes[:, :count]
        indices = indices.view(2, levels, groups, 9).permute(2, 0, 3, 1)  # library layout [G, B, F, L]
        expected = model.quantizer.vq.get_output_from_indices(indices).transpose(1, 2)
        torch.testing.assert_close(model.quantizer.decode(codes[:, :count]), expected)


def test_bad_codes_are_rejected(model):
    good = torch.zeros(1, 4, 5, dtype=torch.long)
    for bad in (good + model.codebook_size, good - 1, good.float(), good[0], good[:, :3]):
        with pytest.raises(ValueError):
            model.decode(bad)


# ------------------------------------------------------------------------------------- compress / decompress


def level_scale(wav: torch.Tensor) -> torch.Tensor:
    """Per signal, the factor compress applies to bring it to the corpus level."""
    from vocoder.audio import level_gains

    return torch.pow(10.0, level_gains(wav) / 20.0).reshape(-1, 1, 1).float()


@pytest.mark.parametrize("num_codebooks", [2, 4])
def test_decompress_equals_decode_of_encode(model, num_codebooks):
    wav = torch.stack([signal(1.3, seed=1), signal(1.3, seed=2)])  # [2, 1, T], T not a multiple of the hop
    data = model.compress(wav, SR, num_codebooks, normalize=False)
    audio, sample_rate = model.decompress(data)
    reference = model.decode(model.encode(wav, SR, num_codebooks))
    assert sample_rate == SR and audio.shape == (2, 1, wav.shape[-1])
    assert torch.equal(audio, reference[..., : wav.shape[-1]])
    frames = frames_for(wav.shape[-1])
    assert len(data) == 45 + 2 * 2 + math.ceil(2 * num_codebooks * frames * 6 / 8)  # header, 2 gains, codes
    # By default each signal codes at the corpus level and gets its own level back.
    normalised = model.decompress(model.compress(wav * 0.01, SR, num_codebooks))[0]
    level = model.decode(model.encode(wav * 0.01 * level_scale(wav * 0.01), SR, num_codebooks))[..., : wav.shape[-1]]
    assert torch.allclose(normalised, level / level_scale(wav * 0.01), atol=1e-6)


def test_decompress_resampled_input_has_input_duration(model):
    wav = signal(0.77, 22_050)
    audio, sample_rate = model.decompress(model.compress(wav, 22_050))
    assert audio.shape[-1] == math.ceil(wav.shape[-1] * SR / 22_050)


# ------------------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("decoder", ["frame", "conv"])
def test_chunked_processing_matches_whole_signal(decoder):
    whole = initialised(WaveformCodecConfig.tiny(decoder=decoder))
    chunked = Codec(replace(whole.config, chunking=ChunkConfig(frames=13))).eval()
    chunked.load_state_dict(whole.state_dict())
    assert chunked.fingerprint() == whole.fingerprint()  # chunking does not change what codes mean
    wav = signal(2.0)  # 100 frames: 8 chunks of up to 13 frames
    codes = whole.encode(wav, SR)
    chunked_codes = chunked.encode(wav, SR, progress=False)
    # Only a latent within float noise of two codebook entries could flip; none should in practice.
    assert (codes == chunked_codes).float().mean() >= 0.99
    audio = whole.decode(codes)
    torch.testing.assert_close(chunked.decode(codes, progress=False), audio, atol=1e-5, rtol=1e-4)


def _receptive_field(net: torch.nn.Module, channels: int, frames: int, scale: int) -> int:
    """Frames on either side of frame ``frames // 2`` that influence it (input at ``scale`` steps per frame)."""
    x = torch.randn(1, channels, frames * scale, requires_grad=True)
    y = net(x)
    y = y.waveform if hasattr(y, "waveform") else y
    centre = frames // 2
    out_scale = y.shape[-1] // frames
    y[..., centre * out_scale:(centre + 1) * out_scale].sum().backward()
    touched = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero().squeeze(-1)
    first, last = int(touched.min()) // scale, int(touched.max()) // scale
    return max(centre - first, last - centre)


@pytest.mark.parametrize("decoder", ["frame", "conv"])
def test_default_chunk_context_covers_receptive_field(decoder):
    """Chunked processing is exact when the context is at least the receptive field."""
    torch.manual_seed(0)
    model = Codec(WaveformCodecConfig(decoder=decoder))
    chunking, hop = model.config.chunking, model.hop_length
    assert _receptive_field(model.encoder, 1, 64, hop) <= chunking.encode_context
    assert _receptive_field(model.decoder, model.config.latent_dim, 96, 1) <= chunking.decode_context


def test_progress_bar_on_long_inputs(model, capsys):
    chunked = Codec(replace(model.config, chunking=ChunkConfig(frames=10))).eval()
    chunked.load_state_dict(model.state_dict())
    chunked.encode(signal(1.0), SR)  # 50 frames = 5 chunks: the bar shows by default
    assert "encoding" in capsys.readouterr().err
    chunked.encode(signal(1.0), SR, progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------- untrained models, devices


def test_inference_never_changes_the_model():
    """k-means initialisation is pending on an untrained model; inference must not trigger it."""
    torch.manual_seed(0)
    model = Codec(WaveformCodecConfig.tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # encode/decode switch to eval and back
    model.decode(model.encode(signal(0.5), SR))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_seeded_construction_is_deterministic():
    torch.manual_seed(0)
    a = Codec(WaveformCodecConfig.tiny())
    torch.manual_seed(0)
    b = Codec(WaveformCodecConfig.tiny())
    assert a.fingerprint() == b.fingerprint()
    torch.manual_seed(1)
    assert Codec(WaveformCodecConfig.tiny()).fingerprint() != a.fingerprint()


def test_24khz_configuration():
    tiny = WaveformCodecConfig.tiny()
    model = initialised(WaveformCodecConfig.for_24khz(latent_dim=tiny.latent_dim, encoder_filters=tiny.encoder_filters,
                                              backbone=tiny.backbone, quantizer=tiny.quantizer))
    assert (model.sample_rate, model.hop_length, model.frame_rate) == (24_000, 240, 100.0)
    wav = signal(1.0, 24_000)
    codes = model.encode(wav, 24_000)
    assert codes.shape == (1, 4, 100)
    audio, sample_rate = model.decompress(model.compress(wav, 24_000, num_codebooks=2))
    assert sample_rate == 24_000 and audio.shape == (1, 1, 24_000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip(model):
    cpu_audio = model.decode(model.encode(signal(1.0), SR))
    gpu = initialised(WaveformCodecConfig.tiny()).cuda()
    codes = gpu.encode(signal(1.0), SR)
    assert codes.device.type == "cuda"
    audio, _ = gpu.decompress(gpu.compress(signal(1.0), SR))
    assert audio.device.type == "cuda" and audio.shape == (1, 1, SR)
    assert torch.isfinite(cpu_audio).all()


# ------------------------------------------------------------------------------------- checkpoints


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    loaded = Codec.from_pretrained(tmp_path / "m")
    assert loaded.fingerprint() == model.fingerprint()
    wav = signal(1.0)
    codes = model.encode(wav, SR)
    assert torch.equal(loaded.encode(wav, SR), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))
    assert torch.equal(loaded.decompress(model.compress(wav, SR))[0], model.decompress(model.compress(wav, SR))[0])


def test_checkpoint_errors(model, tmp_path, monkeypatch):
    monkeypatch.setattr(Codec, "default_pretrained", tmp_path / "not-shipped")
    with pytest.raises(CheckpointError, match="no shipped"):
        Codec.from_pretrained()
    with pytest.raises(CheckpointError):
        Codec.from_pretrained(tmp_path / "missing")
    directory = model.save_pretrained(tmp_path / "m")
    (directory / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError):
        Codec.from_pretrained(directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        Codec.from_pretrained(directory)
    (directory / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError):
        Codec.from_pretrained(directory)


def test_weights_of_another_architecture_do_not_load(model, tmp_path):
    frame_dir = model.save_pretrained(tmp_path / "frame")
    conv_dir = Codec(WaveformCodecConfig.tiny(decoder="conv")).save_pretrained(tmp_path / "conv")
    (frame_dir / "model.safetensors").write_bytes((conv_dir / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match"):
        Codec.from_pretrained(frame_dir)


# ------------------------------------------------------------------------------------- training


def test_training_mode_forward():
    torch.manual_seed(0)
    model = Codec(WaveformCodecConfig.tiny()).train()
    wav = signal(1.01)[None]  # not a multiple of the hop
    out = model(wav)
    assert isinstance(model, WaveformCodec) and isinstance(out, WaveformCodecOutput)
    assert out.audio.shape == wav.shape and out.codes.shape == (1, 4, frames_for(wav.shape[-1]))
    assert out.quantizer_loss.dim() == 0 and out.spectrum is not None
    with pytest.raises(ValueError, match="quantizer dropout"):
        model(wav, num_codebooks=2)
    # Dropout draws one level count per step for all groups; dropped levels carry code -1.
    latent = torch.randn(2, model.config.latent_dim, 20)
    kept = set()
    for _ in range(32):  # each step keeps 1 or 2 levels with probability 1/2
        codes = model.quantizer(latent).codes
        assert (codes[:, :2] >= 0).all() and ((codes[:, 2:] == -1).all() or (codes[:, 2:] >= 0).all())
        kept.add(int((codes[0, :, 0] >= 0).sum()))
    assert kept == {2, 4}
    model.eval()
    assert model(wav, num_codebooks=2).codes.shape[1] == 2


@pytest.mark.parametrize("decoder, adversarial", [("frame", True), ("conv", False)])
def test_gan_training_step_stays_finite(decoder, adversarial):
    torch.manual_seed(0)
    model = Codec(WaveformCodecConfig.tiny(decoder=decoder)).train()
    loss_fn = CodecLoss.for_config(model.config)
    assert isinstance(loss_fn, WaveformCodecLoss)
    discriminators = Discriminators(DiscriminatorConfig(periods=(2, 3), period_channels=(4, 8), scales=1,
                                                        scale_channels=(4, 8), stft_filters=4))
    gen_opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.8, 0.99))
    disc_opt = torch.optim.AdamW(discriminators.parameters(), lr=1e-4, betas=(0.8, 0.99))
    wav = torch.stack([signal(0.4, seed=1), signal(0.4, seed=2)])
    before = [p.detach().clone() for p in model.parameters()]
    out = model(wav)
    disc_loss = adversarial_discriminator_loss(discriminators, out.audio, wav)
    disc_opt.zero_grad()
    disc_loss.backward()
    disc_opt.step()
    loss = loss_fn(out, wav, discriminators if adversarial else None)
    gen_opt.zero_grad()
    loss.total.backward()
    gen_opt.step()
    assert torch.isfinite(loss.total) and torch.isfinite(disc_loss)
    expected = {"mel", "quantizer"} | ({"spectrum"} if decoder == "frame" else set())
    expected |= {"adversarial", "feature_matching"} if adversarial else set()
    assert set(loss.terms) == expected
    torch.testing.assert_close(sum(loss.terms.values()), loss.total.detach())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # The first level of each group always runs, so its codebooks were k-means initialised.
    books = model.quantizer._codebooks()  # (group, level) order
    levels = model.config.quantizer.levels
    assert all(bool(books[g * levels].initted) for g in range(model.config.quantizer.groups))
    assert all(torch.isfinite(w).all() for w in model.quantizer.codebook_weights())


def test_warm_start_may_change_training_settings_but_not_the_architecture(tmp_path):
    from presets import TINY_CODEC
    torch.manual_seed(0)
    saved = Codec(TINY_CODEC)
    saved.save_pretrained(tmp_path / "saved")
    quantizer = replace(TINY_CODEC.quantizer, dead_code_threshold=0.1, commitment_weight=1.0)
    tuned = Codec(replace(TINY_CODEC, quantizer=quantizer, chunking=ChunkConfig(frames=100)))
    tuned.load_weights_from(tmp_path / "saved")
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in saved.state_dict().items())
    # Same tensor shapes, other meaning: refused, naming the field.
    other = Codec(replace(TINY_CODEC, sample_rate=24_000))
    with pytest.raises(CheckpointError, match="sample_rate"):
        other.load_weights_from(tmp_path / "saved")
