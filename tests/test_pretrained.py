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
