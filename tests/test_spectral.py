import math

import pytest
import torch

from vocoder.losses import LossWeights, anti_wrapping, phase_losses, spectrum_losses
from vocoder.modules import AmplitudePhaseHead, Backbone, BackboneConfig
from vocoder.spectral import InverseSTFT, MelConfig, MelSpectrogram, stft


@pytest.mark.parametrize("n_fft,hop", [(640, 160), (1280, 320), (512, 128)])
def test_inverse_stft_matches_torch_istft_in_the_interior(n_fft, hop):
    torch.manual_seed(0)
    spec = torch.randn(2, n_fft // 2 + 1, 40, dtype=torch.complex64)
    ours = InverseSTFT(n_fft, hop)(spec.real, spec.imag)
    window = torch.hann_window(n_fft)
    ref = torch.istft(spec, n_fft, hop, n_fft, window, center=True)
    # "same" framing puts frame n at n*hop + hop/2; torch's centre convention at n*hop.
    shift = hop // 2
    interior = slice(n_fft, ours.shape[-1] - n_fft)
    assert ours.shape[-1] == 40 * hop
    torch.testing.assert_close(ours[:, interior], ref[:, interior.start - shift: interior.stop - shift],
                               atol=1e-4, rtol=1e-4)


def test_stft_then_inverse_reconstructs_the_signal():
    torch.manual_seed(0)
    x = torch.randn(1, 16000)
    spec = stft(x, 1280, 320)
    assert spec.shape == (1, 641, 50)
    y = InverseSTFT(1280, 320)(spec.real, spec.imag)
    torch.testing.assert_close(y[:, 1280:-1280], x[:, 1280:-1280], atol=1e-4, rtol=1e-4)


def test_mel_frame_count_and_shape():
    mel = MelSpectrogram(MelConfig())(torch.randn(3, 1, 16000))
    assert mel.shape == (3, 80, 100)
    assert torch.isfinite(mel).all()


def test_phase_losses_zero_for_identical_and_invariant_to_2pi():
    torch.manual_seed(0)
    phase = (torch.rand(2, 33, 20) * 2 - 1) * math.pi
    for kind in ("linear", "cos"):
        zero = phase_losses(phase, phase, kind)
        assert zero.total().item() == pytest.approx(0.0, abs=1e-6)
        other = phase + 0.3 * torch.randn_like(phase)
        base = phase_losses(other, phase, kind)
        shifted = phase_losses(other + 2 * math.pi, phase, kind)
        assert base.total().item() > 0
        assert shifted.total().item() == pytest.approx(base.total().item(), abs=1e-4)
    with pytest.raises(ValueError):
        anti_wrapping(phase, "square")


def test_amplitude_weighted_phase_losses_ignore_silent_bins():
    torch.manual_seed(0)
    phase = (torch.rand(2, 33, 20) * 2 - 1) * math.pi
    weight = torch.zeros_like(phase)
    weight[:, 10:12] = 1.0  # only two loud bins
    noisy_elsewhere = phase.clone()
    noisy_elsewhere[:, :10] += torch.randn_like(phase[:, :10])
    noisy_elsewhere[:, 13:] += torch.randn_like(phase[:, 13:])
    assert phase_losses(noisy_elsewhere, phase, weight=weight).total().item() == pytest.approx(0.0, abs=1e-6)
    assert phase_losses(noisy_elsewhere, phase).total().item() > 0.1
    wrong_loud = phase.clone()
    wrong_loud[:, 10] += 1.0
    weighted = phase_losses(wrong_loud, phase, weight=weight)
    assert weighted.instantaneous_phase.item() == pytest.approx(0.5, abs=1e-5)  # half the weighted bins off by 1
    assert phase_losses(wrong_loud + 2 * math.pi, phase, weight=weight).total().item() == pytest.approx(
        weighted.total().item(), abs=1e-4)
    # Uniform weights are the plain means.
    plain, uniform = phase_losses(wrong_loud, phase), phase_losses(wrong_loud, phase, weight=torch.ones_like(phase))
    assert uniform.total().item() == pytest.approx(plain.total().item(), abs=1e-5)
    with pytest.raises(ValueError, match="phase_weighting"):
        LossWeights(phase_weighting="loud")


def test_head_produces_frames_times_hop_samples_and_finite_losses():
    backbone = Backbone(80, BackboneConfig(dim=32, intermediate_dim=64, num_layers=2))
    head = AmplitudePhaseHead(32, 640, 160, 640)
    out = head(backbone(torch.randn(2, 80, 25)))
    assert out.waveform.shape == (2, 1, 25 * 160)
    terms = spectrum_losses(out, torch.randn(2, 1, 25 * 160) * 0.1, 640, 160, 640)
    assert all(torch.isfinite(v) for v in terms.values())


def test_residual_backbone_keeps_frame_rate():
    backbone = Backbone(16, BackboneConfig(kind="residual", dim=16, num_layers=1))
    assert backbone(torch.randn(1, 16, 30)).shape == (1, 16, 30)
