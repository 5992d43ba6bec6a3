"""Live coding with a causal codec: stateful stream objects, packets, and the CLI's stream format.

>>> codec = Codec.from_pretrained("codec/pretrained/streaming")      # a SpectralCodecConfig.streaming() model
>>> encoder, decoder = codec.stream_encoder(), codec.stream_decoder()
>>> packets = encoder.push(pcm_chunk)          # any chunk size, float or int16; one packet per 20 ms frame
>>> audio = decoder.push(packets[0])           # float32 samples; decoder.push(None) conceals a lost packet
>>> packets += encoder.flush(); tail = decoder.flush()

Design (``SpectralCodecConfig(causal=True)``): the mel frames end at their hop and every convolution is
padded on the left only, so a packet exists as soon as its 20 ms frame has been pushed (no lookahead);
the decoder's convolutions are causal too and its :class:`~vocoder.streaming.StreamingSynthesis`
(mel pseudo-inverse amplitude, zero-delay RTPGHI, two mel-consistent RTISI iterations, overlap-add)
makes each sample final 20 ms after the newest analysed one: :func:`algorithmic_latency` is 40 ms. Both
objects work one code frame at a time whatever the chunking, so their output does not depend on it, and
:meth:`Codec.decode` of the same codes gives the same spectrogram (its convolutions run over whole
signals, so float rounding differs, and the phase iterations carry that into the phase track).

Packet layout (one code frame; integers little-endian)::

    offset size field
    0      1    version (high 4 bits, 1) | payload coding (2 bits, :data:`PAYLOAD_CODERS`) | levels - 1 (2 bits:
                residual levels coded; with 2 groups of 1024 entries, 1 level is 1 kbps and 2 levels 2 kbps)
    1      2    sequence number: the frame's index modulo 65536
    3      P    payload: groups x levels codes (level-major, as ``codes[:, :K]``), ceil(log2(codebook size))
                bits each, most significant bit first, zero-padded to a whole byte (coding 0)
    3+P    2    CRC-16: the low 16 bits of zlib's CRC32 of every preceding byte

:func:`unpack_packet` checks every field (length, CRC, version, coding, levels, padding bits, code range)
and raises :class:`~codec.bitstream.BitstreamError` otherwise: any bytes either decode or raise it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Protocol, Union

import numpy as np
import torch

from vocoder.audio import AudioError
from vocoder.modules import StreamCache
from vocoder.streaming import SynthesisState

from .bitstream import FINGERPRINT_BYTES, BitstreamError, bits_per_code, pack_codes, unpack_codes

if TYPE_CHECKING:
    from .model import Codec

PACKET_VERSION = 1
CODING_FIXED = 0  # fixed-width codes
# Reserved for entropy-coded payloads: register a PayloadCoder under it. None ships: a packet must decode on
# its own, and arithmetic coding one 20 ms frame that way takes more bytes than its fixed codes
# (benchmarks/bench_entropy.py --packet-frames); .grvq streams are where entropy coding pays.
CODING_ENTROPY = 1
SEQUENCE_MODULO = 1 << 16
_PACKET_HEAD = struct.Struct("<BH")
_PACKET_CRC = struct.Struct("<H")
PACKET_OVERHEAD = _PACKET_HEAD.size + _PACKET_CRC.size  # 5 bytes around the payload
# Lost packets concealed at once when a sequence number jumps (1 s); a longer gap restarts concealment-free.
MAX_CONCEALED_GAP = 50
# Concealment fades repeated frames by this much per lost packet (a 10-packet burst ends 30 dB down).
CONCEAL_DECAY_DB = 3.0


class PayloadCoder(Protocol):
    """How a packet's codes become payload bytes and back: the hook for entropy coding.

    ``context`` is the previous frame's codes ``[K]`` as the decoder received them, or ``None`` after a
    lost packet or at the start: a coder with inter-frame context must fall back to context-free
    probabilities then, since the decoder cannot know what it missed. ``decode`` must raise
    :class:`~codec.bitstream.BitstreamError` for payloads it cannot decode.
    """

    def encode(self, codes: np.ndarray, layout: "PacketLayout", context: Optional[np.ndarray]) -> bytes: ...

    def decode(self, payload: bytes, count: int, layout: "PacketLayout",
               context: Optional[np.ndarray]) -> np.ndarray: ...


class FixedWidthPayload:
    """Coding 0: every code in ``layout.bits`` bits, most significant first, zero-padded to a byte."""

    def encode(self, codes: np.ndarray, layout: "PacketLayout", context: Optional[np.ndarray]) -> bytes:
        return pack_codes(codes, layout.bits)

    def decode(self, payload: bytes, count: int, layout: "PacketLayout", context: Optional[np.ndarray]) -> np.ndarray:
        expected = (count * layout.bits + 7) // 8
        if len(payload) != expected:
            raise BitstreamError(f"packet payload holds {len(payload)} bytes, {count} codes need {expected}")
        spare = expected * 8 - count * layout.bits
        if spare and payload[-1] & ((1 << spare) - 1):
            raise BitstreamError("packet padding bits are not zero (damaged packet)")
        return unpack_codes(payload, count, layout.bits)


PAYLOAD_CODERS: Dict[int, PayloadCoder] = {CODING_FIXED: FixedWidthPayload()}


@dataclass(frozen=True)
class PacketLayout:
    """What a packet's payload means: the codec's groups, residual levels and codebook size."""

    groups: int
    levels: int
    codebook_size: int

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 4 or not 1 <= self.groups <= 255 or self.codebook_size < 2:
            raise ValueError(f"packets carry 1-4 levels of 1-255 groups, got {self.levels} and {self.groups}")

    @classmethod
    def of(cls, codec: "Codec") -> "PacketLayout":
        q = codec.config.quantizer
        return cls(q.groups, q.levels, q.codebook_size)

    @property
    def bits(self) -> int:
        return bits_per_code(self.codebook_size)


@dataclass(frozen=True)
class Packet:
    """One code frame: its sequence number and its codes ``[K]`` (``K`` = groups x levels coded)."""

    sequence: int
    codes: np.ndarray
    coding: int = CODING_FIXED


def pack_packet(packet: Packet, layout: PacketLayout, context: Optional[np.ndarray] = None) -> bytes:
    """The bytes of ``packet`` (see the module docstring)."""
    codes = np.asarray(packet.codes).reshape(-1)
    count = codes.shape[0]
    if count == 0 or count % layout.groups or count // layout.groups > layout.levels:
        raise ValueError(f"a packet holds whole levels of {layout.groups} codes, up to {layout.levels}, got {count}")
    if codes.min() < 0 or codes.max() >= layout.codebook_size:
        raise ValueError(f"codes must lie in [0, {layout.codebook_size})")
    if packet.coding not in PAYLOAD_CODERS:
        raise ValueError(f"no payload coder registered for coding {packet.coding}")
    head = (PACKET_VERSION << 4) | (packet.coding << 2) | (count // layout.groups - 1)
    body = _PACKET_HEAD.pack(head, packet.sequence % SEQUENCE_MODULO)
    body += PAYLOAD_CODERS[packet.coding].encode(codes, layout, context)
    return body + _PACKET_CRC.pack(zlib.crc32(body) & 0xFFFF)


def unpack_packet(data: bytes, layout: PacketLayout, context: Optional[np.ndarray] = None) -> Packet:
    """The :class:`Packet` in ``data``, or :class:`~codec.bitstream.BitstreamError` with a one-line reason."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"a packet is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < PACKET_OVERHEAD + 1:
        raise BitstreamError(f"packet of {len(data)} bytes is shorter than any valid one")
    body, (crc,) = data[:-_PACKET_CRC.size], _PACKET_CRC.unpack_from(data, len(data) - _PACKET_CRC.size)
    if zlib.crc32(body) & 0xFFFF != crc:
        raise BitstreamError("packet CRC mismatch (damaged packet)")
    head, sequence = _PACKET_HEAD.unpack_from(body)
    version, coding, levels = head >> 4, (head >> 2) & 3, (head & 3) + 1
    if version != PACKET_VERSION:
        raise BitstreamError(f"unsupported packet version {version} (this reader knows {PACKET_VERSION})")
    coder = PAYLOAD_CODERS.get(coding)
    if coder is None:
        raise BitstreamError(f"packet payload coding {coding} is not supported by this version")
    if levels > layout.levels:
        raise BitstreamError(f"packet codes {levels} levels, the model has {layout.levels}")
    count = levels * layout.groups
    codes = np.asarray(coder.decode(body[_PACKET_HEAD.size:], count, layout, context), dtype=np.int64)
    if codes.shape != (count,) or codes.min() < 0 or codes.max() >= layout.codebook_size:
        raise BitstreamError(f"packet codes out of range for a {layout.codebook_size}-entry codebook")
    return Packet(sequence, codes, coding)


# ---------------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Latency:
    """Algorithmic latency of a causal codec in ms: the code frame the encoder waits for, its lookahead
    beyond that frame (0: causal), and the synthesis delay (a sample is final once no later frame's
    synthesis window reaches it). Compute time comes on top."""

    frame_ms: float
    lookahead_ms: float
    synthesis_ms: float

    @property
    def total_ms(self) -> float:
        return self.frame_ms + self.lookahead_ms + self.synthesis_ms


def algorithmic_latency(codec: "Codec") -> Latency:
    """The :class:`Latency` of a streaming codec (40 ms for ``SpectralCodecConfig.streaming()``)."""
    _require_streaming(codec)
    rate = codec.sample_rate / 1000
    return Latency(codec.hop_length / rate, 0.0, codec.synthesis.delay / rate)


def _require_streaming(codec: "Codec") -> None:
    if not codec.streaming:
        raise ValueError(f"this {type(codec).__name__} looks ahead (centred analysis and convolutions): streaming "
                         "needs a causal codec, SpectralCodecConfig.streaming()")


# ---------------------------------------------------------------------------------- stream objects


def as_samples(pcm: Union[np.ndarray, torch.Tensor, bytes, bytearray]) -> np.ndarray:
    """Mono PCM as float32 in [-1, 1]: float arrays as they are, integer PCM scaled (int16 by 32768),
    ``bytes`` read as 16-bit little-endian samples. Shapes ``[T]``, ``[1, T]`` or ``[T, 1]``."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise AudioError("16-bit PCM bytes must come in whole samples (an even number of bytes)")
        pcm = np.frombuffer(bytes(pcm), dtype="<i2")
    if isinstance(pcm, torch.Tensor):
        pcm = pcm.detach().cpu().numpy()
    array = np.asarray(pcm)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise AudioError(f"a stream takes mono PCM shaped [T], [1, T] or [T, 1], got {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float32) / float(-np.iinfo(array.dtype).min)).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"PCM must be float or integer samples, got {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise AudioError("PCM holds NaN or infinite samples")
    return array


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples as 16-bit little-endian PCM bytes (clipped to full scale)."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).round().astype("<i2").tobytes()


class StreamEncoder:
    """PCM in (any chunk size) -> one packet per code frame. Made by :meth:`Codec.stream_encoder`.

    Each frame is encoded on its own as soon as its samples are in, so the packets do not depend on
    how the PCM was chunked. Input is taken at the codec's rate (16 kHz), not normalised in level.
    The codec is put in eval mode; one codec serves any number of stream objects at once.
    """

    def __init__(self, codec: "Codec", num_codebooks: Optional[int] = None) -> None:
        _require_streaming(codec)
        self.codec = codec.eval()
        self.num_codebooks = codec.quantizer.check_num_codebooks(num_codebooks)
        self.layout = PacketLayout.of(codec)
        self.sequence = 0
        self._cache: StreamCache = {}
        self._buffer = np.zeros(0, dtype=np.float32)
        self._pushed = 0  # samples pushed in all

    @property
    def frame_length(self) -> int:
        return self.codec.hop_length

    def push(self, pcm: Union[np.ndarray, torch.Tensor, bytes]) -> List[bytes]:
        """Packets of the code frames that ``pcm`` completes (none while a frame is still partial)."""
        samples = as_samples(pcm)
        self._pushed += samples.shape[0]
        self._buffer = np.concatenate([self._buffer, samples])
        hop = self.frame_length
        whole = self._buffer.shape[0] // hop * hop
        frames, self._buffer = self._buffer[:whole], self._buffer[whole:]
        return [self._encode_frame(frames[first:first + hop]) for first in range(0, whole, hop)]

    def flush(self) -> List[bytes]:
        """The last partial frame (zero-padded) and one frame of silence, so that the decoder's output
        covers every sample pushed; the encoder then starts over."""
        hop = self.frame_length
        tail = np.zeros(-self._buffer.shape[0] % hop + hop, dtype=np.float32)
        packets = self.push(tail) if self._buffer.shape[0] else self.push(tail[:hop])
        self.__init__(self.codec, self.num_codebooks)
        return packets

    @torch.inference_mode()
    def _encode_frame(self, frame: np.ndarray) -> bytes:
        device = self.codec.device
        latent = self.codec.encoder.step(torch.from_numpy(frame)[None].to(device), self._cache)
        codes = self.codec.quantizer.nearest_codes(latent, self.num_codebooks)[0, :, 0].cpu().numpy()
        packet = pack_packet(Packet(self.sequence, codes), self.layout)
        self.sequence += 1
        return packet


class StreamDecoder:
    """Packets in -> PCM out (float32 at the codec's rate), aligned with the encoder's input: sample
    ``t`` out is sample ``t`` in, coded. Made by :meth:`Codec.stream_decoder`.

    ``push(packet)`` returns the samples that packet makes final: one code frame's (320 at 16 kHz),
    none for the first packet (the synthesis delay). ``push(None)`` conceals a lost packet: the last
    received frame's codes are decoded again, faded by :data:`CONCEAL_DECAY_DB` per packet lost in a row,
    and the phase runs on, so there is no click and the output keeps its length. A jump in sequence
    numbers (up to :data:`MAX_CONCEALED_GAP`) is concealed the same way; a late or repeated packet is
    dropped (empty output). A packet that does not parse raises :class:`~codec.bitstream.BitstreamError`
    and leaves the decoder as it was (push ``None`` in its place to keep time).
    """

    def __init__(self, codec: "Codec") -> None:
        _require_streaming(codec)
        self.codec = codec.eval()
        self.layout = PacketLayout.of(codec)
        self._cache: StreamCache = {}
        self._synthesis: SynthesisState = codec.synthesis.initial_state(1, codec.device)
        self._expected: Optional[int] = None  # next sequence number
        self._previous: Optional[torch.Tensor] = None  # last frame's codes [1, K, 1]
        self._context: Optional[np.ndarray] = None  # for payload coders with inter-frame context
        self._lost = 0  # packets lost in a row
        self.frames = 0  # code frames decoded or concealed

    def push(self, packet: Optional[bytes]) -> np.ndarray:
        """Samples made final by ``packet`` (``None``: a lost packet, concealed)."""
        if packet is None:
            return self._conceal(1)
        parsed = unpack_packet(packet, self.layout, self._context)
        pieces = []
        if self._expected is not None:
            gap = (parsed.sequence - self._expected) % SEQUENCE_MODULO
            if gap >= SEQUENCE_MODULO // 2:  # late or repeated: its time has passed
                return np.zeros(0, dtype=np.float32)
            if 0 < gap <= MAX_CONCEALED_GAP:
                pieces.append(self._conceal(gap))
        self._expected = (parsed.sequence + 1) % SEQUENCE_MODULO
        self._context = parsed.codes
        codes = torch.from_numpy(parsed.codes)[None, :, None].to(self.codec.device)
        self._lost = 0
        pieces.append(self._decode(codes, 0.0))
        self._previous = codes
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def flush(self) -> np.ndarray:
        """The samples still pending at the end of the stream (one code frame's); the decoder starts over."""
        with torch.inference_mode():
            tail = self.codec.synthesis.flush(self._synthesis)[0].cpu().numpy()
        self.__init__(self.codec)
        return tail

    def _conceal(self, count: int) -> np.ndarray:
        pieces = []
        self._context = None
        for _ in range(count):
            self._lost += 1
            if self._expected is not None:
                self._expected = (self._expected + 1) % SEQUENCE_MODULO
            pieces.append(self._decode(self._previous, CONCEAL_DECAY_DB * self._lost))
        return np.concatenate(pieces)

    @torch.inference_mode()
    def _decode(self, codes: Optional[torch.Tensor], fade_db: float) -> np.ndarray:
        codec = self.codec
        decoder = codec.decoder
        if codes is None:  # nothing received yet: silence at the analysis floor
            mel = torch.full((1, codec.vocoder.n_mels, codec.config.spectral.downsample), decoder.log_floor,
                             device=codec.device)
        else:
            mel = decoder.step(codec.quantizer.decode(codes), self._cache)
            if fade_db:  # natural-log magnitudes: -fade_db dB is a shift
                mel = (mel - fade_db * np.log(10) / 20).clamp(min=decoder.log_floor)
        self.frames += 1
        return codec.synthesis.step(mel, self._synthesis)[0].cpu().numpy()


# ------------------------------------------------------------------------------ lossy channel, simulated


def random_losses(count: int, rate: float, seed: int = 0) -> np.ndarray:
    """A packet-loss pattern for ``count`` packets: each lost (True) on its own with probability ``rate``,
    drawn from ``numpy.random.default_rng(seed)`` (the same seed, the same pattern)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"a loss rate lies in [0, 1), got {rate}")
    return np.random.default_rng(seed).random(count) < rate


def decode_with_losses(codec: "Codec", packets: List[bytes], lost: np.ndarray,
                       length: Optional[int] = None) -> np.ndarray:
    """``packets`` (a whole stream, flushed) through a :class:`StreamDecoder`, those where ``lost`` is
    True pushed as ``None`` (concealed), then flushed: the audio aligned with the encoder's input,
    cut to ``length`` samples when given (the input's length)."""
    if len(lost) != len(packets):
        raise ValueError(f"{len(lost)} loss flags for {len(packets)} packets")
    decoder = codec.stream_decoder()
    pieces = [decoder.push(None if gone else packet) for packet, gone in zip(packets, lost)]
    audio = np.concatenate([*pieces, decoder.flush()])
    return audio if length is None else audio[:length]


# ------------------------------------------------------------------------------ CLI stream format

STREAM_MAGIC = b"GRVS"
STREAM_VERSION = 1
_STREAM_HEAD = struct.Struct(f"<4sBIIIBB{FINGERPRINT_BYTES}s")
_STREAM_CRC = struct.Struct("<I")
STREAM_HEAD_BYTES = _STREAM_HEAD.size + _STREAM_CRC.size
_LENGTH = struct.Struct("<H")  # each packet's length before it; 0 marks a packet lost upstream


@dataclass(frozen=True)
class StreamPreamble:
    """What ``python -m codec stream-encode`` writes before its packets, so the decoder can refuse a
    stream from another model: the rate, hop, packet layout and the codec's fingerprint."""

    sample_rate: int
    hop_length: int
    layout: PacketLayout
    fingerprint: bytes

    @classmethod
    def of(cls, codec: "Codec") -> "StreamPreamble":
        return cls(codec.sample_rate, codec.hop_length, PacketLayout.of(codec), codec.fingerprint())

    def pack(self) -> bytes:
        body = _STREAM_HEAD.pack(STREAM_MAGIC, STREAM_VERSION, self.sample_rate, self.hop_length,
                                 self.layout.codebook_size, self.layout.groups, self.layout.levels, self.fingerprint)
        return body + _STREAM_CRC.pack(zlib.crc32(body))

    @classmethod
    def unpack(cls, data: bytes) -> "StreamPreamble":
        if len(data) != STREAM_HEAD_BYTES:
            raise BitstreamError(f"stream preamble needs {STREAM_HEAD_BYTES} bytes, got {len(data)}")
        body, (crc,) = data[:_STREAM_HEAD.size], _STREAM_CRC.unpack_from(data, _STREAM_HEAD.size)
        magic, version, rate, hop, size, groups, levels, fingerprint = _STREAM_HEAD.unpack(body)
        if magic != STREAM_MAGIC:
            raise BitstreamError("not a GRVQ packet stream (bad magic)")
        if zlib.crc32(body) != crc:
            raise BitstreamError("stream preamble CRC mismatch (damaged stream)")
        if version != STREAM_VERSION:
            raise BitstreamError(f"unsupported packet stream version {version}")
        try:
            layout = PacketLayout(groups, levels, size)
        except ValueError as err:
            raise BitstreamError(f"stream preamble: {err}") from None
        return cls(rate, hop, layout, fingerprint)

    def check(self, codec: "Codec") -> None:
        """Raise :class:`~codec.bitstream.BitstreamError` unless ``codec`` made this stream."""
        if (self.sample_rate, self.hop_length, self.layout) != (codec.sample_rate, codec.hop_length,
                                                                PacketLayout.of(codec)):
            raise BitstreamError("packet stream does not fit this model (rate, hop or codebooks differ)")
        if not codec.matches_fingerprint(self.fingerprint):
            raise BitstreamError("packet stream was made by a different model (fingerprint mismatch)")


def frame_packet(packet: Optional[bytes]) -> bytes:
    """``packet`` with its length before it, as the CLI stream carries it (``None``: a lost-packet mark)."""
    payload = b"" if packet is None else packet
    return _LENGTH.pack(len(payload)) + payload


def read_exactly(stream, count: int) -> bytes:
    """``count`` bytes from a binary stream, fewer only at its end."""
    chunks, got = [], 0
    while got < count:
        chunk = stream.read(count - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_framed(stream) -> object:
    """The next packet of a CLI stream: its bytes, ``None`` for a lost-packet mark, ``...`` at the end.
    A stream cut inside a packet raises :class:`~codec.bitstream.BitstreamError`."""
    head = read_exactly(stream, _LENGTH.size)
    if not head:
        return ...
    if len(head) < _LENGTH.size:
        raise BitstreamError("packet stream ends inside a packet length")
    (length,) = _LENGTH.unpack(head)
    if length == 0:
        return None
    packet = read_exactly(stream, length)
    if len(packet) < length:
        raise BitstreamError("packet stream ends inside a packet")
    return packet
