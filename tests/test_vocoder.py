import numpy as np
import pytest
import torch

from vocoder import AudioError, CheckpointError, MelConfig, Vocoder, VocoderConfig
from vocoder.checkpoint import config_from_dict, config_to_dict
from vocoder.discriminators import DiscriminatorConfig, Discriminators
from vocoder.losses import LossWeights
from vocoder.modules import BackboneConfig
from vocoder.training import VocoderLoss

TINY_MEL = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=20)
TINY_MEL_SCALES = ((256, 64, 20), (128, 32, 16))


def tiny_config(kind: str = "convnext") -> VocoderConfig:
    # A learned amplitude (not the shipped default) so that every part of the network trains.
    return VocoderConfig(mel=TINY_MEL, backbone=BackboneConfig(kind, dim=32, intermediate_dim=64, num_layers=2),
                         n_fft=256, win_length=256, learned_amplitude=True)


@pytest.fixture(scope="module")
def vocoder() -> Vocoder:
    torch.manual_seed(0)
    return Vocoder(tiny_config()).eval()


@pytest.mark.parametrize("shape", [(1000,), (2, 1000), (3, 2, 1000)])
def test_mel_and_decode_shapes_for_every_layout(vocoder, shape):
    wav = torch.randn(shape) * 0.1
    mel = vocoder.mel(wav, vocoder.sample_rate)
    batch = shape[0] if len(shape) == 3 else 1
    frames = 1000 // vocoder.hop_length
    assert mel.shape == (batch, vocoder.n_mels, frames)
    audio = vocoder.decode(mel)
    assert audio.shape == (batch, 1, frames * vocoder.hop_length)
    assert torch.isfinite(audio).all()


def test_numpy_input_and_resampling(vocoder):
    wav = (np.random.default_rng(0).standard_normal((2, 16000)) * 0.1).astype(np.float32)
    mel = vocoder.mel(wav, 16000)  # 1 s at 16 kHz -> 8000 samples at the model rate
    assert mel.shape == (1, vocoder.n_mels, 8000 // vocoder.hop_length)
    pcm = (wav[0] * 32767).astype(np.int16)
    assert vocoder.mel(pcm, 16000).shape == mel.shape


def test_decode_accepts_unbatched_mel_and_rejects_bad_ones(vocoder):
    assert vocoder.decode(torch.zeros(vocoder.n_mels, 7)).shape == (1, 1, 7 * vocoder.hop_length)
    with pytest.raises(ValueError, match="shaped"):
        vocoder.decode(torch.zeros(1, vocoder.n_mels + 1, 7))
    with pytest.raises(ValueError, match="NaN"):
        vocoder.decode(torch.full((1, vocoder.n_mels, 7), float("nan")))


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.full((100,), float("nan")), torch.zeros(10)])
def test_bad_audio_is_rejected(vocoder, bad):
    with pytest.raises(ValueError):
        vocoder.mel(bad, vocoder.sample_rate)


def test_bad_sample_rate_is_rejected(vocoder):
    with pytest.raises(AudioError, match="sample rate"):
        vocoder.mel(torch.zeros(1000), 0)


def test_config_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="multiple"):
        VocoderConfig(mel=TINY_MEL, n_fft=200, win_length=200)
    with pytest.raises(ValueError, match="win_length"):
        VocoderConfig(mel=TINY_MEL, n_fft=256, win_length=512)
    config = tiny_config("residual")
    assert config_from_dict(VocoderConfig, config_to_dict(config)) == config


@pytest.mark.parametrize("kind", ["convnext", "residual"])
def test_save_load_round_trip_gives_identical_output(tmp_path, kind):
    torch.manual_seed(0)
    model = Vocoder(tiny_config(kind)).eval()
    model.save_pretrained(tmp_path)
    loaded = Vocoder.from_pretrained(tmp_path)
    assert loaded.config == model.config
    mel = torch.randn(2, model.n_mels, 9)
    torch.testing.assert_close(loaded.decode(mel), model.decode(mel), rtol=0, atol=0)


def test_missing_default_model_is_a_checkpoint_error(monkeypatch, tmp_path):
    monkeypatch.setattr(Vocoder, "default_pretrained", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="no shipped"):
        Vocoder.from_pretrained()


def tiny_discriminators() -> Discriminators:
    return Discriminators(DiscriminatorConfig(periods=(2, 3), period_channels=(4, 8), scales=1,
                                              scale_channels=(4, 16), stft_filters=4, stft_n_ffts=(256, 128)))


def test_adversarial_training_step_runs_and_gives_finite_gradients():
    torch.manual_seed(0)
    model = Vocoder(tiny_config())
    loss_fn = VocoderLoss(model.config, discriminators=tiny_discriminators(), mel_scales=TINY_MEL_SCALES)
    target = torch.randn(2, 1, 32 * model.hop_length) * 0.1
    prediction = model(model.frontend(target))
    output = loss_fn(prediction, target)
    expected = {"amplitude", "instantaneous_phase", "group_delay", "angular_frequency", "consistency",
                "real_imag", "mel", "adversarial", "feature_matching"}
    assert set(output.terms) == expected
    output.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    disc_loss = loss_fn.discriminator_loss(prediction.waveform, target)
    assert disc_loss.requires_grad and torch.isfinite(disc_loss)
    # Without the adversarial flag only the reconstruction terms remain.
    assert "adversarial" not in loss_fn(model(model.frontend(target)), target, adversarial=False).terms


@pytest.mark.parametrize("weights", [LossWeights(phase_kind="cos", phase_weighting="none"), LossWeights()])
def test_repeated_steps_lower_the_loss_on_a_fixed_batch(weights):
    torch.manual_seed(0)
    model = Vocoder(tiny_config())
    loss_fn = VocoderLoss(model.config, weights, mel_scales=TINY_MEL_SCALES)
    t = torch.arange(24 * model.hop_length) / model.sample_rate
    target = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn_like(t))[None, None]
    mel = model.frontend(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = loss_fn(model(mel), target).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_pseudo_inverse_reproduces_the_mel_it_came_from():
    mel_frontend = Vocoder(tiny_config()).frontend
    t = torch.arange(4000) / 8000
    wav = (0.3 * torch.sin(2 * torch.pi * 300 * t) + 0.02 * torch.randn_like(t))[None, None]
    log_mel = mel_frontend(wav)
    log_amplitude = mel_frontend.pseudo_inverse(log_mel)
    assert log_amplitude.shape == (1, 129, log_mel.shape[-1])
    # Projecting the rough spectrum back onto the filterbank recovers the mel where it has energy
    # (on average: the magnitude taken of the pseudo-inverse moves a few bins).
    back = torch.log(torch.clamp(mel_frontend.fbank @ torch.exp(log_amplitude), min=1e-5))
    loud = log_mel > log_mel.max() - 4
    assert (back[loud] - log_mel[loud]).abs().mean() < 0.3


def test_untrained_amplitude_prior_vocoder_starts_at_the_pseudo_inverse():
    torch.manual_seed(0)
    model = Vocoder(tiny_config())
    assert model.config.amplitude_prior
    mel = model.frontend(torch.randn(1, 1, 2000) * 0.1)
    torch.testing.assert_close(model(mel).log_amplitude, model.frontend.pseudo_inverse(mel))
    without = Vocoder(VocoderConfig(**{**tiny_config().__dict__, "amplitude_prior": False}))
    assert not torch.allclose(without(mel).log_amplitude, model.frontend.pseudo_inverse(mel))


def test_amplitude_prior_needs_the_mel_frequency_bins():
    with pytest.raises(ValueError, match="amplitude_prior"):
        VocoderConfig(mel=TINY_MEL, n_fft=512, win_length=256)
    VocoderConfig(mel=TINY_MEL, n_fft=512, win_length=256, amplitude_prior=False, learned_amplitude=True)
