"""Neural audio codec with group-residual vector quantization (GRVQ, as in HiFi-Codec).

>>> from codec import Codec, CodecConfig
>>> model = Codec(CodecConfig())                  # untrained; Codec.from_pretrained(dir) to load
>>> data = model.compress(wav, sample_rate)       # .grvq bytes at model.bitrate bits/s
>>> audio, sr = model.decompress(data)
"""

from .bitstream import BitstreamError
from .config import ChunkConfig, CodecConfig, QuantizerConfig
from .model import Codec, CodecOutput
from .quantizer import GroupResidualQuantizer

__all__ = [
    "BitstreamError",
    "ChunkConfig",
    "Codec",
    "CodecConfig",
    "CodecOutput",
    "GroupResidualQuantizer",
    "QuantizerConfig",
]
