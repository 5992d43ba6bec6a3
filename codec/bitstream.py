"""The ``.grvq`` stream: a fixed header, bit-packed codes and a CRC32 trailer.

Layout (all integers little-endian)::

    offset size  field
    0      4     magic b"GRVQ"
    4      1     format version (3 for entropy-coded payloads, else 2; versions 1 and 2 still decode)
    5      1     channels of the coded signal (always 1: the codec codes mono audio)
    6      4     sample rate of the coded signal (Hz)
    10     2     batch size B (number of signals in the stream)
    12     8     original length in samples at that rate (the decoder trims to it)
    20     1     number of codebooks K
    21     4     codebook size (entries per codebook)
    25     4     hop length in samples (frame rate = sample rate / hop length)
    29     4     number of frames F = ceil(length / hop)
    33     8     model fingerprint (BLAKE2b of the codec's architecture and codebooks)
    41     2 * B version 2 only: each signal's output gain in hundredths of a dB (int16), which
                 restores the level the encoder normalised away (0 for none)
    ...    1     version 3 only: payload coding (0: fixed-width codes as below; 1: arithmetic-coded with
                 the integer context model of :mod:`codec.entropy`)
    ...    4     version 3 only: id of the entropy table the payload was coded with (zeros for coding 0)
    ...    ...   payload: B * K * F codes, ceil(log2(codebook size)) bits each, most significant bit
                 first, in [B, K, F] order (frames fastest), zero-padded to a whole byte; or (coding 1)
                 the arithmetic coder's bytes, whose length is what lies between header and CRC
    end-4  4     CRC32 of every preceding byte

At 1024 entries a code takes 10 bits, so one second of one signal at 2 kbps (50 frames x 4
codebooks) is 250 bytes of payload plus 47 bytes of header, gain and trailer. Entropy coding
(:func:`pack` with ``entropy_coding=True``, version 3) takes fewer bits where the context model
predicts the codes, and is used only when it makes the stream smaller. :func:`unpack` checks every field
against the others and raises :class:`BitstreamError` with a one-line reason; it never returns
codes from a damaged stream. Whether the stream fits a given model is checked by the model
(:meth:`codec.Codec.decompress`).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np

from . import entropy

MAGIC = b"GRVQ"
VERSION = 2  # what fixed-width streams are written as
ENTROPY_VERSION = 3  # what entropy-coded streams are written as
VERSIONS = (1, 2, 3)  # what the reader accepts
CODING_FIXED, CODING_CONTEXT = 0, 1
CODINGS = (CODING_FIXED, CODING_CONTEXT)
ENTROPY_CODING_DEFAULT = True  # Codec.compress and the CLI (measured: codec/entropy.py, the model card)
GAIN_STEP_DB = 0.01
MAX_GAIN_DB = 327.0  # what an int16 of hundredths of a dB holds
FINGERPRINT_BYTES = 8
_HEADER = struct.Struct("<4sBBIHQBIII8s")
_CRC = struct.Struct("<I")
_CODING = struct.Struct(f"<B{entropy.TABLE_ID_BYTES}s")
HEADER_BYTES = _HEADER.size


class BitstreamError(ValueError):
    """A ``.grvq`` stream that cannot be decoded: damaged, foreign, or made by another model."""


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs to know about a stream besides the codes themselves."""

    sample_rate: int
    batch: int
    length: int
    num_codebooks: int
    codebook_size: int
    hop_length: int
    num_frames: int
    fingerprint: bytes
    channels: int = 1
    gains_db: tuple = ()  # per signal, applied after decoding (version 2; empty means 0 dB each)
    version: int = VERSION
    coding: int = CODING_FIXED  # version 3: how the payload is coded
    table_id: bytes = bytes(entropy.TABLE_ID_BYTES)  # version 3: the entropy table of a coding-1 payload

    def __post_init__(self) -> None:
        if self.version >= 2 and not self.gains_db and isinstance(self.batch, int) and self.batch > 0:
            object.__setattr__(self, "gains_db", (0.0,) * self.batch)
        object.__setattr__(self, "gains_db", tuple(float(g) for g in self.gains_db))

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.codebook_size)

    @property
    def gain_bytes(self) -> int:
        return 2 * self.batch if self.version >= 2 else 0

    @property
    def coding_bytes(self) -> int:
        return _CODING.size if self.version >= 3 else 0

    @property
    def start(self) -> int:
        """Offset of the payload."""
        return HEADER_BYTES + self.gain_bytes + self.coding_bytes

    @property
    def num_codes(self) -> int:
        return self.batch * self.num_codebooks * self.num_frames

    @property
    def payload_bytes(self) -> int:
        """Size of a fixed-width payload (an entropy-coded one has the size it has)."""
        return math.ceil(self.num_codes * self.bits_per_code / 8)

    def validate(self) -> None:
        """Raise :class:`BitstreamError` if the fields contradict each other."""
        if self.channels != 1:
            raise BitstreamError(f"stream has {self.channels} channels; only mono streams exist in version {VERSION}")
        for name in ("sample_rate", "batch", "length", "num_codebooks", "hop_length", "num_frames"):
            if getattr(self, name) < 1:
                raise BitstreamError(f"stream header has invalid {name.replace('_', ' ')} {getattr(self, name)}")
        if self.codebook_size < 2:
            raise BitstreamError(f"stream header has invalid codebook size {self.codebook_size}")
        if self.num_frames != math.ceil(self.length / self.hop_length):
            raise BitstreamError(
                f"inconsistent header: {self.num_frames} frames for {self.length} samples at hop {self.hop_length}")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise BitstreamError(f"fingerprint must be {FINGERPRINT_BYTES} bytes, got {len(self.fingerprint)}")
        if self.version not in VERSIONS:
            raise BitstreamError(f"unsupported .grvq format version {self.version} (this reader knows {VERSIONS})")
        if self.gains_db and (len(self.gains_db) != self.batch or self.version < 2):
            raise BitstreamError(f"{len(self.gains_db)} gains for {self.batch} signals in a version {self.version} stream")
        if not all(math.isfinite(g) and abs(g) <= MAX_GAIN_DB for g in self.gains_db):
            raise BitstreamError(f"gains must be finite and within ±{MAX_GAIN_DB} dB")
        if self.coding not in CODINGS or (self.version < 3 and self.coding != CODING_FIXED):
            raise BitstreamError(f"unknown payload coding {self.coding} in a version {self.version} stream")
        if len(self.table_id) != entropy.TABLE_ID_BYTES or (self.coding == CODING_FIXED and any(self.table_id)):
            raise BitstreamError("stream header has an invalid entropy table id")

    def gains(self) -> tuple:
        """Each signal's output gain in dB (0 where the stream stores none)."""
        return tuple(self.gains_db) if self.gains_db else (0.0,) * self.batch

    @property
    def duration(self) -> float:
        """Duration of each signal in seconds."""
        return self.length / self.sample_rate


def bits_per_code(codebook_size: int) -> int:
    """Bits needed for one code of a ``codebook_size``-entry codebook."""
    return max(1, math.ceil(math.log2(codebook_size)))


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Bit-pack non-negative integers, ``bits`` each, most significant bit first."""
    flat = np.ascontiguousarray(codes, dtype=np.uint32).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((flat[:, None] >> shifts) & 1).astype(np.uint8)).tobytes()


def unpack_codes(payload: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` codes as int64."""
    bit_array = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=count * bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_array.reshape(count, bits).astype(np.int64) @ weights


def pack(header: StreamHeader, codes: np.ndarray, entropy_coding: bool = False) -> bytes:
    """Serialise ``codes`` ``[B, K, F]`` (integers in ``[0, codebook_size)``) under ``header``.

    With ``entropy_coding``, the codes are arithmetic-coded with the entropy table of the header's
    model fingerprint (:func:`codec.entropy.table_for`) as a version 3 stream, unless there is no
    such table or the result would not be smaller: then the stream is written as ``header`` says.
    """
    header.validate()
    if header.version >= 3 and header.coding == CODING_CONTEXT:
        table = entropy.table_by_id(header.table_id)
        if table is None:
            raise BitstreamError(f"no entropy table with id {header.table_id.hex()}")
        return _pack(header, codes, entropy.encode_codes(codes, table))
    fixed = _pack(header, codes, None)
    if not entropy_coding:
        return fixed
    table = entropy.table_for(header.fingerprint)
    if (table is None or table.codebook_size != header.codebook_size or header.num_codebooks > table.num_codebooks
            or header.num_codebooks % table.groups):
        return fixed
    try:
        payload = entropy.encode_codes(codes, table)
    except (entropy.EntropyError, AssertionError):  # the coder's own limits: keep the fixed codes
        return fixed
    coded = _pack(replace(header, version=ENTROPY_VERSION, coding=CODING_CONTEXT, table_id=table.table_id),
                  codes, payload)
    return coded if len(coded) < len(fixed) else fixed


def _pack(header: StreamHeader, codes: np.ndarray, payload: bytes | None) -> bytes:
    """``header`` + ``payload`` (the fixed-width codes when None) + CRC."""
    header.validate()
    expected = (header.batch, header.num_codebooks, header.num_frames)
    if codes.shape != expected:
        raise BitstreamError(f"codes shaped {codes.shape} do not match the header {expected}")
    if codes.size and (codes.min() < 0 or codes.max() >= header.codebook_size):
        raise BitstreamError(f"codes must lie in [0, {header.codebook_size})")
    head = _HEADER.pack(MAGIC, header.version, header.channels, header.sample_rate, header.batch, header.length,
                        header.num_codebooks, header.codebook_size, header.hop_length, header.num_frames,
                        header.fingerprint)
    if header.version >= 2:
        steps = [int(round(g / GAIN_STEP_DB)) for g in header.gains()]
        head += struct.pack(f"<{header.batch}h", *steps)
    if header.version >= 3:
        head += _CODING.pack(header.coding, header.table_id)
    body = head + (pack_codes(codes, header.bits_per_code) if payload is None else payload)
    return body + _CRC.pack(zlib.crc32(body))


def read_header(data: bytes) -> StreamHeader:
    """Parse and validate the header alone (magic, version, field consistency); no CRC check."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a stream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a .grvq stream (wrong magic bytes)")
    if len(data) < HEADER_BYTES + _CRC.size:
        raise BitstreamError(f"stream truncated: {len(data)} bytes, shorter than the header")
    (_, version, channels, sample_rate, batch, length, num_codebooks, codebook_size, hop_length,
     num_frames, fingerprint) = _HEADER.unpack_from(data)
    if version not in VERSIONS:
        raise BitstreamError(f"unsupported .grvq format version {version} (this reader knows {VERSIONS})")
    gains: tuple = ()
    if version >= 2:
        if batch < 1 or len(data) < HEADER_BYTES + 2 * batch + _CRC.size:
            raise BitstreamError(f"stream truncated: {len(data)} bytes, shorter than the header and gains")
        gains = tuple(step * GAIN_STEP_DB for step in struct.unpack_from(f"<{batch}h", data, HEADER_BYTES))
    coding, table_id = CODING_FIXED, bytes(entropy.TABLE_ID_BYTES)
    if version >= 3:
        if len(data) < HEADER_BYTES + 2 * batch + _CODING.size + _CRC.size:
            raise BitstreamError(f"stream truncated: {len(data)} bytes, shorter than the header")
        coding, table_id = _CODING.unpack_from(data, HEADER_BYTES + 2 * batch)
    header = StreamHeader(sample_rate, batch, length, num_codebooks, codebook_size, hop_length, num_frames,
                          fingerprint, channels, gains, version, coding, table_id)
    header.validate()
    return header


def unpack(data: bytes) -> tuple[StreamHeader, np.ndarray]:
    """Parse and check a whole stream: returns the header and codes ``[B, K, F]`` (int64)."""
    header = read_header(data)
    data = bytes(data)
    start = header.start
    if header.coding == CODING_FIXED:
        expected = start + header.payload_bytes + _CRC.size
        if len(data) < expected:
            raise BitstreamError(f"stream truncated: {len(data)} bytes, expected {expected}")
        if len(data) > expected:
            raise BitstreamError(f"stream has {len(data) - expected} unexpected trailing bytes")
    body, (crc,) = data[:-_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise BitstreamError("stream is corrupt (CRC32 mismatch)")
    count = header.num_codes
    if header.coding == CODING_CONTEXT:
        table = entropy.table_by_id(header.table_id)
        if table is None:
            raise BitstreamError(f"stream is entropy-coded with table {header.table_id.hex()}, which this "
                                 "toolkit does not have")
        if table.codebook_size != header.codebook_size:  # (whether the model fits is the model's check)
            raise BitstreamError(f"entropy table {header.table_id.hex()} is for another codebook size")
        try:
            codes = entropy.decode_codes(body[start:], table, header.batch, header.num_codebooks, header.num_frames)
        except entropy.EntropyError as err:
            raise BitstreamError(f"stream is corrupt: {err}") from None
        return header, codes
    codes = unpack_codes(body[start:], count, header.bits_per_code)
    if codes.max(initial=0) >= header.codebook_size:
        raise BitstreamError(f"stream holds codes outside [0, {header.codebook_size})")
    return header, codes.reshape(header.batch, header.num_codebooks, header.num_frames)
