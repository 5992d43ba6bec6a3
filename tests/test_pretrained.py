"""The shipped models: they load offline and reconstruct real speech they never trained on.

The fixtures are real speech from three sources held out of the codec's training (tests/fixtures/README.md):
English from warzone2100-data, Czech from fillets-ng-data-cs, a Russian telephone prompt from
asterisk-core-sounds-ru-g722. Floors are the values measured when the models shipped, minus a
margin, so a broken model or a broken decode path fails while normal numeric noise does not.
"""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import Codec, SpectralCodec
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
    assert isinstance(codec, SpectralCodec) and codec.bitrate == 2000 and codec.allowed_num_codebooks == [2, 4]


HELD_OUT_FIXTURES = {  # each from a source the codec never trained on (tests/fixtures/README.md)
    "warzone2100": "speech_warzone2100_tut1.flac",
    "fillets_cs": "speech_fillets_cs_let_v_vrak0.flac",
    "asterisk_ru": "speech_asterisk_ru_auth_incorrect.flac",
}


# Floors sit 0.2-0.35 PESQ and 0.03-0.05 STOI below the values measured at shipping (codec model card);
# a broken model scores PESQ about 1.0 and STOI about 0.2.
@pytest.mark.parametrize("fixture, num_codebooks, pesq_floor, stoi_floor", [
    ("warzone2100", 4, 1.6, 0.85), ("warzone2100", 2, 1.3, 0.82),
    ("fillets_cs", 4, 1.5, 0.78), ("fillets_cs", 2, 1.4, 0.74),
    ("asterisk_ru", 4, 1.8, 0.87), ("asterisk_ru", 2, 1.5, 0.82),
])
def test_shipped_codec_round_trip_on_held_out_sources(fixture, num_codebooks, pesq_floor, stoi_floor):
    speech, rate = load_audio(Path(__file__).parent / "fixtures" / HELD_OUT_FIXTURES[fixture])
    assert rate == 16_000
    codec = Codec.from_pretrained()
    seconds = speech.shape[-1] / rate
    data = codec.compress(speech, 16_000, num_codebooks=num_codebooks)
    assert len(data) < seconds * codec.bitrate_for(num_codebooks) / 8 * 1.1 + 64  # the bitrate holds (+ header)
    audio, rate = codec.decompress(data)
    assert rate == 16_000 and audio.shape[-1] == speech.shape[-1] and torch.isfinite(audio).all()
    assert pesq_wideband(speech, audio[0], 16_000) > pesq_floor
    assert stoi(speech, audio[0], 16_000) > stoi_floor


def test_shipped_codec_codes_quiet_and_loud_input_alike_and_keeps_its_level():
    """compress normalises each signal to the corpus level and the stream restores it."""
    speech, _ = load_audio(Path(__file__).parent / "fixtures" / HELD_OUT_FIXTURES["fillets_cs"])
    codec = Codec.from_pretrained()

    def rms_db(x: torch.Tensor) -> float:
        return float(20 * torch.log10(x.pow(2).mean().sqrt()))

    scores = {}
    for level in (-35.0, -20.0):
        quiet = speech * 10 ** ((level - rms_db(speech)) / 20)
        audio, _ = codec.decompress(codec.compress(quiet, 16_000))
        assert abs(rms_db(audio[0]) - level) < 1.5  # the codec decodes about 0.6 dB quieter
        scores[level] = pesq_wideband(quiet, audio[0], 16_000)
    assert abs(scores[-35.0] - scores[-20.0]) < 0.05


STREAMING = Path(__file__).resolve().parents[1] / "codec" / "pretrained" / "streaming"


# Floors sit about 0.1 PESQ and 0.05 STOI below the shipped streaming codec's scores on these fixtures
# (its model card); the causal codec before fine-tuning scores STOI below 0.1.
@pytest.mark.parametrize("fixture, pesq_floor, stoi_floor", [
    ("warzone2100", 1.5, 0.83), ("fillets_cs", 1.28, 0.70), ("asterisk_ru", 1.33, 0.79),
])
def test_shipped_streaming_codec_codes_held_out_speech_live(fixture, pesq_floor, stoi_floor):
    from codec.streaming import algorithmic_latency, decode_with_losses

    codec = Codec.from_pretrained(STREAMING)
    assert codec.streaming and algorithmic_latency(codec).total_ms <= 40
    speech, rate = load_audio(Path(__file__).parent / "fixtures" / HELD_OUT_FIXTURES[fixture])
    pcm = speech[0].numpy()
    encoder, packets = codec.stream_encoder(), []
    for first in range(0, len(pcm), 1000):  # as a sound card delivers it, in pieces that are not whole frames
        packets += encoder.push(pcm[first:first + 1000])
    packets += encoder.flush()
    audio = decode_with_losses(codec, packets, np.zeros(len(packets), dtype=bool), len(pcm))
    assert len(audio) == len(pcm) and np.isfinite(audio).all()
    audio = torch.from_numpy(audio)[None]
    assert pesq_wideband(speech, audio, 16_000) > pesq_floor
    assert stoi(speech, audio, 16_000) > stoi_floor


def test_shipped_streaming_codec_entropy_codes_its_grvq_streams():
    """The table beside the streaming codec's weights loads with it and codes held-out speech in fewer
    bits than the fixed codes, decoding to the very same codes."""
    from codec import entropy
    from codec.bitstream import CODING_CONTEXT, read_header, unpack

    codec = Codec.from_pretrained(STREAMING)
    assert entropy.table_for(codec.fingerprint()) is not None
    speech, rate = load_audio(Path(__file__).parent / "fixtures" / HELD_OUT_FIXTURES["warzone2100"])
    coded, fixed = codec.compress(speech, rate), codec.compress(speech, rate, entropy_coding=False)
    assert read_header(coded).coding == CODING_CONTEXT and len(coded) < 0.95 * len(fixed)
    assert np.array_equal(unpack(coded)[1], unpack(fixed)[1])


def test_stream_commands_use_the_shipped_streaming_codec():
    """``python -m codec stream-encode | python -m codec stream-decode`` with no --model: one second of
    held-out speech through a real pipe comes back as 16-bit PCM of the input's length (plus the flush)."""
    import os
    import subprocess
    import sys

    speech, _ = load_audio(FIXTURE)
    pcm = (speech[0, :16_000].numpy() * 32768).round().clip(-32768, 32767).astype("<i2").tobytes()
    command = f"{sys.executable} -m codec stream-encode | {sys.executable} -m codec stream-decode"
    piped = subprocess.run(command, shell=True, cwd=STREAMING.parents[2], input=pcm, capture_output=True,
                           timeout=180, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert piped.returncode == 0, piped.stderr.decode()
    out = np.frombuffer(piped.stdout, dtype="<i2")
    assert len(out) == 16_000 + 320 and np.abs(out).max() > 100  # 50 frames and the flush's one; not silence
