"""The .grvq stream: exact round trips, sizes, and a clear BitstreamError for every kind of damage."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import BitstreamError, Codec, QuantizerConfig, WaveformCodecConfig
from codec.bitstream import HEADER_BYTES, StreamHeader, pack, pack_codes, read_header, unpack, unpack_codes

SR = 16_000


def header_for(codes: np.ndarray, codebook_size: int = 1024, hop: int = 320) -> StreamHeader:
    batch, count, frames = codes.shape
    return StreamHeader(sample_rate=SR, batch=batch, length=frames * hop - 7, num_codebooks=count,
                        codebook_size=codebook_size, hop_length=hop, num_frames=frames, fingerprint=b"\x01" * 8)


def recrc(body: bytes) -> bytes:
    """Re-seal an edited stream so that only the edited field is wrong."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


@pytest.fixture(scope="module")
def model(tiny_codec) -> Codec:
    return tiny_codec


@pytest.fixture(scope="module")
def stream(tiny_stream) -> bytes:
    return tiny_stream


# ------------------------------------------------------------------------------------- packing


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 16), count=st.integers(0, 300), seed=st.integers(0, 2**31))
def test_bit_packing_round_trips(bits, count, seed):
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=count)
    packed = pack_codes(codes, bits)
    assert len(packed) == math.ceil(count * bits / 8)
    assert np.array_equal(unpack_codes(packed, count, bits), codes)


@pytest.mark.parametrize("codebook_size", [2, 64, 1000, 1024, 4096])
def test_stream_round_trips(codebook_size):
    codes = np.random.default_rng(0).integers(0, codebook_size, size=(2, 4, 37))
    header, decoded = unpack(pack(header_for(codes, codebook_size), codes))
    assert header == header_for(codes, codebook_size)
    assert np.array_equal(decoded, codes)


def test_one_second_at_two_kbps_is_250_bytes():
    codes = np.zeros((1, 4, 50), dtype=np.int64)  # 50 frames x 4 codebooks x 10 bits
    data = pack(header_for(codes), codes)
    assert len(data) - HEADER_BYTES - 2 - 4 == 250  # header, one signal's gain, payload, CRC


def test_pack_rejects_codes_that_do_not_fit():
    codes = np.zeros((1, 2, 5), dtype=np.int64)
    with pytest.raises(BitstreamError):
        pack(header_for(codes, codebook_size=1000), codes + 1000)
    with pytest.raises(BitstreamError):
        pack(header_for(codes), codes[:, :1])


# ------------------------------------------------------------------------------------- damage


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("cut", [0, 1, 3, 10, HEADER_BYTES, HEADER_BYTES + 5, -1])
def test_truncated_stream(stream, cut):
    with pytest.raises(BitstreamError) as err:
        unpack(stream[:cut])
    one_line(err)


@pytest.mark.parametrize("position", [HEADER_BYTES + 3, -6, -1])  # payload, payload end, CRC
def test_flipped_byte(stream, position):
    damaged = bytearray(stream)
    damaged[position] ^= 0x10
    with pytest.raises(BitstreamError, match="CRC32"):
        unpack(bytes(damaged))


def test_flipped_header_byte_never_decodes(stream):
    for position in range(HEADER_BYTES):
        damaged = bytearray(stream)
        damaged[position] ^= 0x01
        with pytest.raises(BitstreamError):
            unpack(bytes(damaged))


def test_foreign_magic_and_unknown_version(stream):
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"RIFF" + stream[4:])
    with pytest.raises(BitstreamError, match="version 99"):
        unpack(recrc(stream[:4] + b"\x63" + stream[5:]))


def test_empty_and_non_bytes():
    with pytest.raises(BitstreamError):
        unpack(b"")
    with pytest.raises(BitstreamError):
        unpack("GRVQ")  # type: ignore[arg-type]


def test_inconsistent_header(stream):
    header = read_header(stream)
    frames_field = 29  # offset of the frame count (see the module docstring)
    wrong = struct.pack("<I", header.num_frames + 1)
    with pytest.raises(BitstreamError, match="inconsistent"):
        unpack(recrc(stream[:frames_field] + wrong + stream[frames_field + 4:]))
    with pytest.raises(BitstreamError, match="trailing"):
        unpack(recrc(stream[:-4] + b"\x00" + stream[-4:]))


def test_codes_out_of_range_are_rejected():
    codes = np.full((1, 2, 8), 999)
    data = bytearray(pack(header_for(codes, codebook_size=1000), codes))
    data[HEADER_BYTES + 2] = 0xFF  # first code (after the gain) becomes >= 1000 (10 bits, all ones in the top 8)
    with pytest.raises(BitstreamError, match="outside"):
        unpack(recrc(bytes(data)))


# ------------------------------------------------------------------------------------- streams and models


def test_stream_from_another_model(stream):
    torch.manual_seed(1)
    other = Codec(WaveformCodecConfig.tiny()).eval()
    with pytest.raises(BitstreamError, match="different model"):
        other.decompress(stream)


def test_stream_for_another_architecture(stream):
    other = Codec(WaveformCodecConfig.tiny(quantizer=QuantizerConfig(codebook_size=128))).eval()
    with pytest.raises(BitstreamError, match="codebook size"):
        other.decompress(stream)


def test_model_rejects_damaged_streams(model, stream):
    audio, sample_rate = model.decompress(stream)
    assert audio.shape == (1, 1, SR) and sample_rate == SR
    for damaged in (b"", stream[:-1], stream[:20], b"XXXX" + stream[4:]):
        with pytest.raises(BitstreamError):
            model.decompress(damaged)
    codes = np.zeros((1, 3, 50), dtype=np.int64)  # 3 codebooks: not a multiple of the 2 groups
    header = StreamHeader(SR, 1, SR, 3, 64, 320, 50, model.fingerprint())
    with pytest.raises(BitstreamError, match="num_codebooks"):
        model.decompress(pack(header, codes))


def test_gains_round_trip_and_version_1_streams_still_decode():
    codes = np.random.default_rng(1).integers(0, 1024, size=(2, 4, 9))
    header = replace(header_for(codes), gains_db=(-12.34, 7.0))
    back, decoded = unpack(pack(header, codes))
    assert back.gains() == (-12.34, 7.0) and np.array_equal(decoded, codes)
    old = replace(header_for(codes), version=1, gains_db=())
    data = pack(old, codes)
    assert len(data) == len(pack(header_for(codes), codes)) - 2 * 2  # no gains in version 1
    back, decoded = unpack(data)
    assert back.version == 1 and back.gains() == (0.0, 0.0) and np.array_equal(decoded, codes)
    with pytest.raises(BitstreamError, match="gains"):
        pack(replace(header_for(codes), gains_db=(float("nan"), 0.0)), codes)
    with pytest.raises(BitstreamError, match="gains"):
        pack(replace(header_for(codes), gains_db=(1.0,)), codes)
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(pack(header, codes)[: HEADER_BYTES + 2])
