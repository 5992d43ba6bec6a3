"""Chunked decoding equals whole-signal decoding, phase refinement included: no seams between chunks."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from codec import Codec
from vocoder import Vocoder, VocoderConfig, load_audio, prepare_waveform
from vocoder.modules import BackboneConfig
from vocoder.phase import PhaseState, pghi_phase

SR = 16_000
FIXTURE = Path(__file__).parent / "fixtures" / "speech_warzone2100_tut1.flac"


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """12.8 s of real speech ``[1, 1, T]``: the 3.2 s fixture forwards and backwards, twice."""
    wav = prepare_waveform(*load_audio(FIXTURE), SR)
    return torch.cat([wav, wav.flip(-1), wav, wav.flip(-1)], -1)


def wrapped_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + torch.pi, 2 * torch.pi) - torch.pi


def test_blockwise_pghi_continues_the_whole_signal_phase(speech):
    vocoder = Vocoder.from_pretrained()
    log_magnitude = vocoder.frontend.pseudo_inverse(vocoder.mel(speech[..., :SR * 2], SR))
    whole = pghi_phase(log_magnitude, 640, 160)
    frames, block = log_magnitude.shape[-1], 37
    blocks, state = [], None
    for first in range(0, frames, block):
        stop = min(first + block, frames)
        # One frame of look-ahead: the last kept frame's phase derivative needs its right neighbour.
        phase = pghi_phase(log_magnitude[..., first:min(stop + 1, frames)], 640, 160, previous=state)[..., :stop - first]
        blocks.append(phase)
        state = PhaseState(log_magnitude[..., stop - 1], phase[..., -1])
    assert wrapped_difference(torch.cat(blocks, -1), whole).abs().max() < 1e-3


@pytest.mark.parametrize("learned_amplitude", [False, True])
@pytest.mark.parametrize("refine, start", [(None, None), (0, None), (3, "network"), (2, "random"), (12, "pghi")])
def test_vocoder_blocks_equal_the_whole_mel(speech, learned_amplitude, refine, start):
    torch.manual_seed(0)
    config = VocoderConfig(backbone=BackboneConfig(dim=32, intermediate_dim=64, num_layers=2),
                           learned_amplitude=learned_amplitude)
    vocoder = Vocoder(config).eval()
    mel = vocoder.mel(speech[..., :SR * 3], SR)
    whole = vocoder.decode(mel, refine=refine, start=start)
    for chunk_frames in (29, 64):
        blocks = vocoder.decode(mel, refine=refine, start=start, chunk_frames=chunk_frames)
        assert blocks.shape == whole.shape
        assert torch.allclose(blocks, whole, atol=1e-4), float((blocks - whole).abs().max())


def test_vocoder_rejects_bad_chunk_sizes():
    vocoder = Vocoder(VocoderConfig(backbone=BackboneConfig(dim=16, intermediate_dim=32, num_layers=1)))
    for chunk_frames in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="chunk_frames"):
            vocoder.decode(torch.zeros(80, 4), chunk_frames=chunk_frames)


def test_chunked_codec_decode_has_no_seams(speech):
    """The shipped codec in 40-frame chunks (16 chunks) against one pass, with the default refinement:
    the log-mel error within two frames of a seam is no larger than elsewhere, and both are tiny
    (PGHI restarted per chunk gave 0.042 near seams against 0.007 elsewhere here)."""
    codec = Codec.from_pretrained()
    codes = codec.encode(speech, SR)
    whole = codec.decode(codes)
    chunk = 40
    codec.config = replace(codec.config, chunking=replace(codec.config.chunking, frames=chunk))
    chunked = codec.decode(codes, progress=False)
    assert chunked.shape == whole.shape
    mel = codec.vocoder.frontend
    error = (mel(whole[:, 0]) - mel(chunked[:, 0])).abs().mean(1)[0]  # per mel frame
    step = chunk * codec.config.spectral.downsample
    seams = torch.arange(step, error.shape[-1], step)
    near = ((torch.arange(error.shape[-1])[:, None] - seams[None]).abs() <= 2).any(1)
    assert len(seams) >= 10
    assert float(error[near].mean()) < 1e-3 and float(error[~near].mean()) < 1e-3
    assert float(error[near].mean()) < 2 * float(error[~near].mean()) + 1e-4
    assert float((chunked - whole).abs().max()) < 2e-3
