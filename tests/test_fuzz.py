"""Fuzzing that stays in the suite: the .grvq parser and the audio input path either work or raise
the library's own error, never anything else."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec import BitstreamError
from codec.bitstream import HEADER_BYTES, MAGIC, unpack
from vocoder import AudioError, prepare_waveform

SR = 16_000


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_decode_or_raise_bitstream_error(data):
    for candidate in (data, MAGIC + data):  # also past the magic check
        try:
            header, codes = unpack(candidate)
        except BitstreamError:
            continue
        assert codes.shape == (header.batch, header.num_codebooks, header.num_frames)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=300))
def test_valid_header_with_any_payload(tiny_stream, tail):
    try:
        unpack(tiny_stream[:HEADER_BYTES] + tail)
    except BitstreamError:
        pass


def test_every_random_edit_of_a_real_stream_is_rejected(tiny_stream, tiny_codec):
    rng = np.random.default_rng(0)
    for _ in range(400):
        damaged = bytearray(tiny_stream)
        position = int(rng.integers(len(damaged)))
        damaged[position] ^= int(rng.integers(1, 256))
        with pytest.raises(BitstreamError):
            tiny_codec.decompress(bytes(damaged))


def test_payload_edits_with_a_recomputed_crc_decode_or_are_rejected(tiny_stream, tiny_codec):
    import struct
    import zlib

    rng = np.random.default_rng(1)
    for _ in range(50):
        damaged = bytearray(tiny_stream[:-4])
        position = int(rng.integers(HEADER_BYTES, len(damaged)))
        damaged[position] ^= int(rng.integers(1, 256))
        sealed = bytes(damaged) + struct.pack("<I", zlib.crc32(bytes(damaged)))
        try:
            audio, rate = tiny_codec.decompress(sealed)
        except BitstreamError:
            continue  # e.g. a code pushed outside the codebook
        assert rate == SR and torch.isfinite(audio).all()


DTYPES = [np.float16, np.float32, np.float64, np.int16, np.int32, np.uint8, np.bool_, np.complex64]


@settings(max_examples=200, deadline=None)
@given(shape=st.lists(st.integers(0, 7), min_size=0, max_size=3), length=st.integers(0, 3000),
       dtype=st.sampled_from(DTYPES), rate=st.one_of(st.integers(-10, 1_000_000), st.floats(-1e6, 1e6)),
       as_torch=st.booleans(), transpose=st.booleans())
def test_prepare_waveform_works_or_raises_audio_error(shape, length, dtype, rate, as_torch, transpose):
    array = (np.random.default_rng(0).standard_normal((*shape, length)) * 0.1).astype(dtype)
    if transpose and array.ndim == 2:
        array = array.T
    wav = torch.from_numpy(array) if as_torch and dtype not in (np.uint8,) else array
    try:
        out = prepare_waveform(wav, rate, SR)
    except AudioError:
        return
    assert out.dim() == 3 and out.shape[1] == 1 and out.dtype == torch.float32
    assert torch.isfinite(out).all()
