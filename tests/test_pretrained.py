"""The shipped models: they load offline and reconstruct real speech they never trained on.

The fixture is 3.2 s of English speech from Debian's warzone2100-data (tests/fixtures/README.md), a
source held out of all training. Floors are the values measured when the models shipped, minus a
margin, so a broken model or a broken decode path fails while normal numeric noise does not.
"""

import time
from pathlib import Path

import pytest
import torch

from codec import Codec
from vocoder import Vocoder, load_audio
from vocoder.model import REFINE_BEST

pesq_module = pytest.importorskip("pesq")
from vocoder.metrics import pesq_wideband, stoi  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "speech_warzone2100_tut1.flac"


@pytest.fixture(scope="module")
def speech():
    wav, rate = load_audio(FIXTURE)
    assert rate == 16_000
    return wav


def test_shipped_vocoder_loads_quickly_and_offline():
    start = time.perf_counter()
    vocoder = Vocoder.from_pretrained()
    assert time.perf_counter() - start < 10
    assert not vocoder.training and vocoder.sample_rate == 16_000


@pytest.mark.parametrize("refine, pesq_floor, stoi_floor", [(0, 1.7, 0.92), (None, 3.6, 0.98), (REFINE_BEST, 4.0, 0.98)])
def test_shipped_vocoder_copy_synthesis(speech, refine, pesq_floor, stoi_floor):
    # Measured at shipping: 2.01 / 0.948 (network alone), 3.91 / 0.994 (default), 4.25 / 0.996 (best).
    vocoder = Vocoder.from_pretrained()
    audio = vocoder.decode(vocoder.mel(speech, 16_000), refine=refine)[0]
    assert pesq_wideband(speech, audio, 16_000) > pesq_floor
    assert stoi(speech, audio, 16_000) > stoi_floor


def test_shipped_codec_loads_quickly_and_offline():
    start = time.perf_counter()
    codec = Codec.from_pretrained()
    assert time.perf_counter() - start < 10
    assert codec.config.kind == "spectral" and codec.bitrate == 2000 and codec.allowed_num_codebooks == [2, 4]


@pytest.mark.parametrize("num_codebooks, pesq_floor, stoi_floor", [(4, 1.6, 0.85), (2, 1.2, 0.82)])
def test_shipped_codec_round_trip(speech, num_codebooks, pesq_floor, stoi_floor):
    # Measured at shipping (version 5): PESQ 1.97 / STOI 0.909 at 2 kbps, 1.39 / 0.874 at 1 kbps; a broken
    # model scores PESQ about 1.0 and STOI about 0.2, version 4 scored 1.07 / 0.776.
    codec = Codec.from_pretrained()
    data = codec.compress(speech, 16_000, num_codebooks=num_codebooks)
    assert len(data) < 3.2 * codec.bitrate_for(num_codebooks) / 8 * 1.1 + 64  # the bitrate holds (+ header)
    audio, rate = codec.decompress(data)
    assert rate == 16_000 and audio.shape[-1] == speech.shape[-1] and torch.isfinite(audio).all()
    assert pesq_wideband(speech, audio[0], 16_000) > pesq_floor
    assert stoi(speech, audio[0], 16_000) > stoi_floor
