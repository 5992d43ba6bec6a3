"""Configuration of the codecs: one typed dataclass per design and per part, every size a field.

A codec's config (:class:`SpectralCodecConfig` or :class:`WaveformCodecConfig`) is stored in
``config.json`` next to the weights, so a saved model always rebuilds with the architecture it was
trained with; :mod:`codec.legacy` reads the flat form that models saved before the split carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar, Tuple

from vocoder.checkpoint import CheckpointError, config_from_dict
from vocoder.model import VocoderConfig, default_backbone
from vocoder.modules import BackboneConfig

from .bitstream import bits_per_code
from .spectral import SpectralConfig

DECODER_KINDS = ("frame", "conv")


@dataclass
class QuantizerConfig:
    """Group-residual VQ: the latent is split into ``groups`` equal parts, each quantized by a
    residual VQ of ``levels`` codebooks with ``codebook_size`` entries (HiFi-Codec: 2 x 2 x 1024).

    Unlike HiFi-Codec (plain codebook loss), codebooks are learned as in EnCodec: k-means
    initialisation, exponential moving averages and dead-code replacement. With
    ``quantize_dropout`` a random number of levels is used in each training step, so one model
    serves every bitrate from ``groups`` to ``groups * levels`` codebooks.
    """

    groups: int = 2
    levels: int = 2
    codebook_size: int = 1024
    kmeans_init: bool = True
    kmeans_iters: int = 10
    ema_decay: float = 0.99
    # Re-seed only entries almost never used: 2 re-seeds much of each codebook every step (codec model card).
    dead_code_threshold: float = 0.1
    commitment_weight: float = 0.25
    # Off as the spectral codec ships (it collapses that encoder onto the first level: codec model card).
    quantize_dropout: bool = False

    def __post_init__(self) -> None:
        if self.groups < 1 or self.levels < 1:
            raise ValueError(f"groups and levels must be positive, got {self.groups} and {self.levels}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {self.codebook_size}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.kmeans_iters < 1 or self.commitment_weight < 0 or self.dead_code_threshold < 0:
            raise ValueError("kmeans_iters must be positive; commitment_weight and dead_code_threshold non-negative")

    @property
    def num_codebooks(self) -> int:
        return self.groups * self.levels

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.codebook_size)


@dataclass
class ChunkConfig:
    """How long inputs are split so memory stays bounded (all counts in frames).

    Each chunk is processed with ``*_context`` extra frames on each side, which are then
    discarded. When the context covers the network's receptive field, chunked processing gives
    the same result as processing the whole signal at once (tests/test_codec.py and
    tests/test_codec_spectral.py check this for both designs), so there are no seams to cross-fade.
    A deeper encoder or decoder needs a larger context. The defaults are the spectral design's;
    :class:`WaveformCodecConfig` sets the waveform design's.
    """

    frames: int = 500  # 10 s at 50 Hz: a bounded working set on a CPU
    encode_context: int = 24  # covers the mel encoder's two ConvNeXt stages
    decode_context: int = 64  # covers the mel decoder's two ConvNeXt stages

    @classmethod
    def waveform(cls) -> "ChunkConfig":
        """Contexts of the waveform design (SEANet encoder, frame decoder)."""
        # SEANet encoder, strides 8,5,4,2, no LSTM: about 4 frames each side; frame decoder: 8 ConvNeXt
        # blocks + convs + ISTFT: 32 frames each side.
        return cls(frames=500, encode_context=8, decode_context=40)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.encode_context < 0 or self.decode_context < 0:
            raise ValueError("chunk frames must be positive and contexts non-negative")


@dataclass
class CodecConfig:
    """What every codec design has: a ``latent_dim`` latent quantized by ``quantizer``, and long
    inputs processed in ``chunking`` chunks. The designs are :class:`SpectralCodecConfig` (the
    shipped one) and :class:`WaveformCodecConfig`, each stored in ``config.json`` with its model.

    Each design has a ``sample_rate``; ``hop_length`` is always the samples per code frame and
    ``frame_rate`` the code frames per second.
    """

    kind: ClassVar[str] = ""  # the design's name, as the recipes' ``model.kind`` selects it
    latent_dim: int = 256
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    chunking: ChunkConfig = field(default_factory=ChunkConfig)

    def __post_init__(self) -> None:
        if type(self) is CodecConfig:
            raise TypeError("CodecConfig is the base of SpectralCodecConfig and WaveformCodecConfig; build one of those")
        if self.latent_dim % self.quantizer.groups:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be divisible by groups ({self.quantizer.groups})")

    @property
    def hop_length(self) -> int:
        raise NotImplementedError

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class SpectralCodecConfig(CodecConfig):
    """The shipped design (the defaults): the ``vocoder``'s log-mel -> mel encoder (``spectral``) ->
    GRVQ -> mel decoder -> the ``vocoder`` (stored inside the codec) with phase refinement.

    The sample rate is the vocoder's; a code frame spans ``spectral.downsample`` mel frames, so the
    hop is the mel hop times ``spectral.downsample`` (320 samples = 50 frames/s at 16 kHz).
    """

    kind: ClassVar[str] = "spectral"
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    # The streaming variant (see streaming()): causal analysis and convolutions, streaming synthesis.
    # Hashed into the fingerprint only when True, so offline models keep theirs.
    causal: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        stages = (self.spectral.mel_stage, self.spectral.code_stage)
        if self.causal and any(stage.kind != "convnext" for stage in stages):
            raise ValueError("a causal spectral codec needs ConvNeXt stages")

    @property
    def sample_rate(self) -> int:
        return self.vocoder.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.vocoder.hop_length * self.spectral.downsample

    @classmethod
    def streaming(cls, **overrides) -> "SpectralCodecConfig":
        """The shipped design made causal for streaming (``codec.stream_encoder()``/``stream_decoder()``):
        parameters named and shaped as the shipped codec's, so its weights warm-start it. A one-sided
        receptive field twice as long needs more left context for chunked offline encoding."""
        return cls(**{"causal": True, "chunking": ChunkConfig(encode_context=48, decode_context=64), **overrides})

    @classmethod
    def small(cls, **overrides) -> "SpectralCodecConfig":
        """About 1 M codec parameters with the default bitstream layout (4 x 1024 codes at 50 Hz): the
        demo's random-weight fallback, quick on a CPU and showing realistic bitrates and file sizes."""
        stage = BackboneConfig(kind="convnext", dim=64, intermediate_dim=192, num_layers=2)
        return cls(**{"latent_dim": 64, "spectral": SpectralConfig(mel_stage=replace(stage), code_stage=replace(stage)),
                      "vocoder": replace(VocoderConfig(), backbone=replace(stage)), **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "SpectralCodecConfig":
        """A very small model with the default framing and a tiny vocoder, for tests and smoke runs."""
        stage = BackboneConfig(kind="convnext", dim=32, intermediate_dim=64, num_layers=1)
        return cls(**{"latent_dim": 32, "quantizer": QuantizerConfig(codebook_size=64, kmeans_iters=2),
                      "spectral": SpectralConfig(mel_stage=replace(stage), code_stage=replace(stage)),
                      "vocoder": replace(VocoderConfig(), backbone=replace(stage, num_layers=2)), **overrides})


@dataclass
class WaveformCodecConfig(CodecConfig):
    """The waveform design: SEANet encoder on the waveform -> GRVQ -> waveform decoder, trained end to
    end against discriminators, with quantizer dropout so one model serves every bitrate
    (``recipes/configs/codec_waveform.yaml``).

    ``strides`` are listed in decoder (upsampling) order as in HiFi-Codec and EnCodec; the SEANet
    encoder applies them in reverse. Their product is the hop: 320 samples = 50 frames/s at
    16 kHz. ``decoder="frame"`` is the vocoder's ConvNeXt trunk (``backbone``) + amplitude/phase head
    (the waveform appears only through the ``n_fft`` inverse STFT); ``decoder="conv"`` is EnCodec's
    SEANet decoder (``conv_decoder_*``).
    """

    kind: ClassVar[str] = "waveform"
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(quantize_dropout=True))
    chunking: ChunkConfig = field(default_factory=ChunkConfig.waveform)
    sample_rate: int = 16_000
    strides: Tuple[int, ...] = (8, 5, 4, 2)
    encoder_filters: int = 32
    encoder_residual_layers: int = 1
    encoder_lstm_layers: int = 0  # 0 keeps chunked encoding exact (finite receptive field) and is faster
    decoder: str = "frame"
    backbone: BackboneConfig = field(default_factory=default_backbone)  # the frame decoder's: the vocoder's trunk
    n_fft: int = 1280
    win_length: int = 1280
    conv_decoder_filters: int = 32
    conv_decoder_lstm_layers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder must be one of {DECODER_KINDS}, got {self.decoder!r}")
        hop = self.hop_length
        if self.n_fft % hop or (self.n_fft - hop) % 2:
            raise ValueError(f"n_fft ({self.n_fft}) must be a multiple of the hop ({hop}) with n_fft - hop even")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got {self.win_length} and {self.n_fft}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @classmethod
    def for_24khz(cls, **overrides) -> "WaveformCodecConfig":
        """HiFi-Codec's 24 kHz variant: strides 8,5,3,2 (hop 240, 100 frames/s), n_fft 960."""
        return cls(**{"sample_rate": 24_000, "strides": (8, 5, 3, 2), "n_fft": 960, "win_length": 960, **overrides})

    @classmethod
    def small(cls, **overrides) -> "WaveformCodecConfig":
        """About 1 M codec parameters with the default bitstream layout (4 x 1024 codes at 50 Hz)."""
        stage = BackboneConfig(kind="convnext", dim=64, intermediate_dim=192, num_layers=2)
        return cls(**{"latent_dim": 64, "encoder_filters": 8, "backbone": stage, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "WaveformCodecConfig":
        """A very small model with the default framing, for tests and smoke runs (not for quality)."""
        return cls(**{"latent_dim": 32, "encoder_filters": 4, "conv_decoder_filters": 4,
                      "backbone": BackboneConfig(kind="convnext", dim=32, intermediate_dim=64, num_layers=2),
                      "quantizer": QuantizerConfig(codebook_size=64, kmeans_iters=2, quantize_dropout=True),
                      **overrides})


CODEC_CONFIGS = {config.kind: config for config in (SpectralCodecConfig, WaveformCodecConfig)}
DEFAULT_KIND = SpectralCodecConfig.kind


def codec_config_from_dict(data: dict, where: str = "model") -> CodecConfig:
    """The config a recipe's ``model`` section describes: ``kind`` (default ``spectral``) picks the
    design, every other key is a field of that design's config."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a mapping of codec config fields")
    fields = dict(data)
    kind = fields.pop("kind", DEFAULT_KIND)
    if kind not in CODEC_CONFIGS:
        raise CheckpointError(f"{where}.kind must be one of {sorted(CODEC_CONFIGS)}, got {kind!r}")
    return config_from_dict(CODEC_CONFIGS[kind], fields, where)
