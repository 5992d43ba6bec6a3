"""Phase refinement (fast Griffin-Lim, mel-consistent mode, PGHI) and the vocoder's decode options."""

import math

import pytest
import torch

from vocoder import MelConfig, MelSpectrogram, Vocoder, VocoderConfig, stft
from vocoder.modules import BackboneConfig
from vocoder.phase import PhaseRefiner, pghi_phase

SR = 16_000


def harmonic_signal(seconds: float = 1.0) -> torch.Tensor:
    """A gliding harmonic tone with a slow amplitude envelope: [1, T]."""
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 180 + 60 * t
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    wav = sum(torch.sin(k * phase) / k for k in range(1, 6))
    return (0.2 * wav * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * t)))[None]


def spectral_convergence(wav: torch.Tensor, magnitude: torch.Tensor, c: MelConfig) -> float:
    """||  |STFT(wav)| - magnitude || / || magnitude ||: 0 when the magnitude is reached exactly."""
    rebuilt = stft(wav.reshape(1, -1), c.n_fft, c.hop_length, c.win_length).abs()
    return float(torch.linalg.norm(rebuilt - magnitude) / torch.linalg.norm(magnitude))


@pytest.fixture(scope="module")
def setup():
    c = MelConfig()
    mel = MelSpectrogram(c)
    wav = harmonic_signal()
    spectrum = stft(wav, c.n_fft, c.hop_length, c.win_length)
    return c, mel, PhaseRefiner(mel), wav, spectrum


def test_true_phase_and_magnitude_reconstruct_the_signal(setup):
    c, _, refiner, wav, spectrum = setup
    out = refiner(spectrum.abs(), spectrum.angle(), iterations=0)
    interior = slice(c.n_fft, -c.n_fft)
    assert out.shape == (1, 1, wav.shape[-1])
    assert torch.allclose(out[0, :, interior], wav[:, interior], atol=1e-4)
    # A known phase is a fixed point: refining it keeps the signal.
    refined = refiner(spectrum.abs(), spectrum.angle(), iterations=8)
    assert torch.allclose(refined[0, :, interior], wav[:, interior], atol=2e-3)


def test_griffin_lim_from_random_phase_converges(setup):
    c, _, refiner, _, spectrum = setup
    magnitude = spectrum.abs()
    errors = [spectral_convergence(refiner(magnitude, None, k, generator=torch.Generator().manual_seed(0)),
                                   magnitude, c) for k in (0, 8, 32)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.5 * errors[0]


def test_mel_consistent_refinement_matches_the_target_mel(setup):
    c, mel, refiner, wav, _ = setup
    target = mel(wav)
    start = torch.exp(mel.pseudo_inverse(target))
    fixed = refiner(start, None, 16, generator=torch.Generator().manual_seed(0))
    consistent = refiner(start, None, 16, target_log_mel=target, generator=torch.Generator().manual_seed(0))
    distance = lambda out: float((mel(out[:, 0]) - target).abs().mean())  # noqa: E731
    assert distance(consistent) < distance(fixed)


def test_pghi_is_a_better_start_than_random_phase(setup):
    c, _, refiner, _, spectrum = setup
    magnitude = spectrum.abs()
    phase = pghi_phase(torch.log(magnitude.clamp(min=1e-5)), c.win_length, c.hop_length)
    assert phase.shape == magnitude.shape and torch.isfinite(phase).all()
    from_pghi = spectral_convergence(refiner(magnitude, phase, 0), magnitude, c)
    from_random = spectral_convergence(refiner(magnitude, None, 0, generator=torch.Generator().manual_seed(0)),
                                       magnitude, c)
    assert from_pghi < 0.6 * from_random


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pghi_runs_on_the_magnitude_device(setup):
    c, _, _, _, spectrum = setup
    log_magnitude = torch.log(spectrum.abs().clamp(min=1e-5))
    on_cpu = pghi_phase(log_magnitude, c.win_length, c.hop_length)
    on_gpu = pghi_phase(log_magnitude.cuda(), c.win_length, c.hop_length)
    assert on_gpu.is_cuda
    difference = torch.remainder(on_gpu.cpu() - on_cpu + torch.pi, 2 * torch.pi) - torch.pi
    assert difference.abs().max() < 1e-2


def test_refiner_rejects_bad_arguments(setup):
    c, _, refiner, _, spectrum = setup
    magnitude = spectrum.abs()
    with pytest.raises(ValueError, match="magnitude"):
        refiner(magnitude[:, :-1], None, 1)
    with pytest.raises(ValueError, match="iterations"):
        refiner(magnitude, None, -1)
    with pytest.raises(ValueError, match="momentum"):
        refiner(magnitude, None, 1, momentum=1.0)
    with pytest.raises(ValueError, match="phase"):
        refiner(magnitude, torch.zeros(1, 3, 3), 1)
    with pytest.raises(ValueError, match="target_log_mel"):
        refiner(magnitude, None, 1, target_log_mel=torch.zeros(1, 3, 3))


@pytest.fixture(scope="module")
def vocoder():
    torch.manual_seed(0)
    return Vocoder(VocoderConfig(backbone=BackboneConfig(dim=32, intermediate_dim=64, num_layers=1))).eval()


@pytest.mark.parametrize("start", ["network", "pghi", "random"])
@pytest.mark.parametrize("refine", [0, 3])
def test_vocoder_decode_starts_and_refinement(vocoder, start, refine):
    mel = vocoder.mel(harmonic_signal(0.5), SR)
    out = vocoder.decode(mel, refine=refine, start=start)
    assert out.shape == (1, 1, mel.shape[-1] * vocoder.hop_length) and torch.isfinite(out).all()
    assert torch.equal(out, vocoder.decode(mel, refine=refine, start=start))  # reproducible, random start too


def test_refine_zero_is_the_pure_network_path(vocoder):
    mel = vocoder.mel(harmonic_signal(0.5), SR)
    assert torch.equal(vocoder.decode(mel, refine=0), vocoder(mel).waveform)


def test_refinement_brings_an_untrained_vocoder_close_to_the_mel(vocoder):
    wav = harmonic_signal()
    mel = vocoder.mel(wav, SR)
    distance = lambda out: float((vocoder.mel(out, SR) - mel).abs().mean())  # noqa: E731
    assert distance(vocoder.decode(mel, refine=16, start="pghi")) < 0.5 * distance(vocoder.decode(mel, refine=0))


@pytest.mark.parametrize("refine", [-1, 1.5, True, "8"])
def test_bad_refine_values_are_rejected(vocoder, refine):
    with pytest.raises(ValueError, match="refine"):
        vocoder.decode(torch.zeros(80, 4), refine=refine)


def test_unknown_start_is_rejected(vocoder):
    with pytest.raises(ValueError, match="start"):
        vocoder.decode(torch.zeros(80, 4), start="zeros")


def test_refinement_needs_the_mel_stft():
    model = Vocoder(VocoderConfig(backbone=BackboneConfig(dim=16, intermediate_dim=32, num_layers=1),
                                  n_fft=960, win_length=960, amplitude_prior=False, learned_amplitude=True))
    mel = torch.zeros(1, 80, 4)
    assert model.decode(mel, refine=0).shape == (1, 1, 4 * 160)
    with pytest.raises(ValueError, match="refinement needs"):
        model.decode(mel, refine=2)


def test_fixed_prior_amplitude_skips_the_network_for_other_starts():
    from dataclasses import replace

    torch.manual_seed(0)
    model = Vocoder(VocoderConfig(backbone=BackboneConfig(dim=16, intermediate_dim=32, num_layers=1),
                                  learned_amplitude=False)).eval()
    assert model.head.amplitude is None
    mel = model.mel(harmonic_signal(0.5), SR)
    prior = model.frontend.pseudo_inverse(mel)
    expected = model.refiner(torch.exp(prior), pghi_phase(prior, 640, 160), 4, target_log_mel=mel)
    assert torch.allclose(model.decode(mel, refine=4, start="pghi"), expected, atol=1e-5)
    # The network still gives the phase for start="network" and the pure path for refine=0.
    assert torch.equal(model.decode(mel, refine=0), model(mel).waveform)
    with pytest.raises(ValueError, match="amplitude_prior"):
        replace(model.config, amplitude_prior=False)
