"""Neural audio codec with group-residual vector quantization (GRVQ, as in HiFi-Codec).

>>> from codec import Codec, SpectralCodec, SpectralCodecConfig
>>> model = Codec.from_pretrained()                   # the shipped SpectralCodec (any saved codec: its design)
>>> model = SpectralCodec(SpectralCodecConfig())      # untrained; WaveformCodec(WaveformCodecConfig()) likewise
>>> data = model.compress(wav, sample_rate)           # .grvq bytes at model.bitrate bits/s
>>> audio, sr = model.decompress(data)
>>> live = SpectralCodec(SpectralCodecConfig.streaming())   # causal: codec.stream_encoder()/stream_decoder()
"""

from .bitstream import BitstreamError
from .config import ChunkConfig, CodecConfig, QuantizerConfig, SpectralCodecConfig, WaveformCodecConfig
from .model import (Codec, CodecOutput, SpectralCodec, SpectralCodecOutput, WaveformCodec, WaveformCodecOutput,
                    read_saved_codec)
from .quantizer import GroupResidualQuantizer
from .streaming import StreamDecoder, StreamEncoder, algorithmic_latency

__all__ = [
    "BitstreamError",
    "ChunkConfig",
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "GroupResidualQuantizer",
    "QuantizerConfig",
    "SpectralCodec",
    "SpectralCodecConfig",
    "SpectralCodecOutput",
    "StreamDecoder",
    "StreamEncoder",
    "WaveformCodec",
    "WaveformCodecConfig",
    "WaveformCodecOutput",
    "algorithmic_latency",
    "read_saved_codec",
]
