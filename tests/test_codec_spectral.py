"""The spectral codec: mel encoder/decoder around the GRVQ, its vocoder inside, same public API."""

import math
from dataclasses import replace

import pytest
import torch

from codec import Codec, SpectralCodec, SpectralCodecConfig, SpectralCodecOutput, WaveformCodecConfig
from codec.bitstream import BitstreamError
from codec.config import ChunkConfig
from codec.spectral import SpectralConfig
from codec.training import CodecLoss, SpectralCodecLoss
from vocoder import MelConfig, Vocoder, VocoderConfig
from vocoder.losses import LossWeights, spectral_convergence

SR = 16_000


def speechlike(seconds: float, batch: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 140 + 40 * torch.sin(2 * math.pi * 1.5 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    wav = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.1
    return (wav + 0.01 * torch.randn(batch, t.numel())).unsqueeze(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Codec(SpectralCodecConfig.tiny()).eval()


def test_framing_and_bitrates(model):
    assert model.hop_length == 320 and model.frame_rate == 50
    assert model.allowed_num_codebooks == [2, 4]
    assert model.bitrate_for(2) == 50 * 2 * 6  # 50 frames/s x 2 codebooks x 6 bits (tiny codebooks of 64)
    assert isinstance(model, SpectralCodec) and model.vocoder is not None


def test_default_spectral_config_is_2_kbps():
    config = SpectralCodecConfig()
    assert config.sample_rate == 16_000 and config.hop_length == 320
    assert config.frame_rate * config.quantizer.num_codebooks * config.quantizer.bits_per_code == 2000


def test_training_forward_returns_mels_and_the_loss_trains(model):
    torch.manual_seed(0)
    trainee = Codec(SpectralCodecConfig.tiny()).train()
    wav = speechlike(0.5, batch=4)
    loss_fn = CodecLoss.for_config(trainee.config, LossWeights(mel=1.0, quantizer=1.0))
    assert isinstance(loss_fn, SpectralCodecLoss)
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        output = trainee(wav)
        assert isinstance(output, SpectralCodecOutput) and output.mel.shape == output.target_mel.shape == (4, 80, 50)
        result = loss_fn(output, wav)
        assert set(result.terms) == {"mel", "quantizer"}
        optimizer.zero_grad()
        result.total.backward()
        optimizer.step()
        losses.append(float(result.terms["mel"]))
    assert losses[-1] < 0.7 * losses[0]


def test_linear_mel_term_rewards_the_level_that_log_mel_l1_ignores():
    target = torch.randn(2, 80, 30)
    quieter = target - 0.7  # a blurred log-mel is quieter once exponentiated: L1 sees a constant shift
    assert float(spectral_convergence(target.exp(), target.exp())) == 0.0
    assert float(spectral_convergence(quieter.exp(), target.exp())) == pytest.approx(1 - math.exp(-0.7), rel=1e-4)
    trainee = Codec(SpectralCodecConfig.tiny()).train()
    wav = speechlike(0.5, batch=2)
    terms = SpectralCodecLoss(LossWeights(mel=1.0, quantizer=1.0, linear_mel=2.0))(trainee(wav), wav).terms
    assert set(terms) == {"mel", "quantizer", "linear_mel"} and float(terms["linear_mel"]) > 0


@pytest.mark.parametrize("num_codebooks", [2, 4])
def test_round_trip_and_bitstream(model, num_codebooks):
    wav = speechlike(0.7)
    codes = model.encode(wav, SR, num_codebooks=num_codebooks)
    assert codes.shape == (1, num_codebooks, math.ceil(wav.shape[-1] / 320))
    audio = model.decode(codes)
    assert audio.shape == (1, 1, codes.shape[-1] * 320) and torch.isfinite(audio).all()
    restored, rate = model.decompress(model.compress(wav, SR, num_codebooks=num_codebooks, normalize=False))
    assert rate == SR and restored.shape[-1] == wav.shape[-1]
    assert torch.allclose(restored, audio[..., : wav.shape[-1]], atol=1e-6)


def test_refine_setting(model):
    codes = model.encode(speechlike(0.5), SR)
    plain = model.decode(codes, refine=0)
    refined = model.decode(codes, refine=4)
    assert plain.shape == refined.shape and not torch.equal(plain, refined)
    with pytest.raises(ValueError, match="refine"):
        model.decode(codes, refine=-1)
    waveform_codec = Codec(WaveformCodecConfig.tiny())
    with pytest.raises(ValueError, match="spectral codec only"):
        waveform_codec.decode(waveform_codec.encode(speechlike(0.2), SR), refine=2)


def test_chunked_processing_matches_whole_signal(model):
    wav = speechlike(2.0)
    chunked = Codec(replace(model.config, chunking=ChunkConfig(frames=16, encode_context=24, decode_context=64)))
    chunked.load_state_dict(model.state_dict())
    chunked.eval()
    codes = model.encode(wav, SR)
    assert torch.equal(chunked.encode(wav, SR), codes)
    assert torch.allclose(chunked.decode(codes, refine=0), model.decode(codes, refine=0), atol=1e-5)


def test_load_vocoder_copies_weights_and_checks_the_config(model):
    torch.manual_seed(1)
    vocoder = Vocoder(model.config.vocoder)
    codec = Codec(model.config)
    codec.load_vocoder(vocoder)
    for name, value in vocoder.state_dict().items():
        assert torch.equal(codec.vocoder.state_dict()[name], value)
    # Another architecture with the same mel analysis is accepted and becomes the codec's config.
    other = Vocoder(replace(model.config.vocoder, learned_amplitude=True))
    codec.load_vocoder(other)
    assert codec.config.vocoder == other.config and codec.vocoder.config.learned_amplitude
    assert torch.isfinite(codec.decode(codec.encode(speechlike(0.3), SR))).all()
    with pytest.raises(ValueError, match="mel analysis"):
        codec.load_vocoder(Vocoder(VocoderConfig(mel=MelConfig(n_mels=64))))
    assert not hasattr(Codec(WaveformCodecConfig.tiny()), "load_vocoder")  # a waveform codec holds no vocoder


def test_save_load_round_trip_and_fingerprint(model, tmp_path):
    model.save_pretrained(tmp_path / "m", half=True)
    loaded = Codec.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    data = loaded.compress(speechlike(0.3), SR)
    other = Codec(WaveformCodecConfig.tiny())
    with pytest.raises(BitstreamError):
        other.decompress(data)


def test_config_validation():
    with pytest.raises(ValueError, match="even"):
        SpectralConfig(downsample=3)
    with pytest.raises(ValueError, match="divisible"):
        SpectralCodecConfig(latent_dim=255)
    with pytest.raises(TypeError, match="SpectralCodec takes a SpectralCodecConfig"):
        SpectralCodec(WaveformCodecConfig.tiny())
