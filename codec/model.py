"""The codecs: one interface (:class:`Codec`), two designs around the same group-residual VQ.

:class:`SpectralCodec` (shipped): log-mel -> mel encoder -> GRVQ -> mel decoder -> its vocoder.
:class:`WaveformCodec`: SEANet encoder -> GRVQ -> frame-level (or SEANet) decoder.

Inference (``encode``/``decode``/``compress``/``decompress``) works on any input layout and rate,
runs chunk by chunk with context so memory stays bounded on long inputs, and gives the same
result as processing the whole signal at once. ``forward`` is the training pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from encodec.modules import SEANetDecoder, SEANetEncoder
from torch import nn
from tqdm.auto import tqdm

from vocoder.audio import ArrayLike, apply_gains, level_gains, prepare_waveform
from vocoder.checkpoint import (CheckpointError, Pretrained, config_from_dict, differing_fields, load_state,
                                read_payload, save_state)
from vocoder.chunking import ChunkSpan, chunk_spans
from vocoder.model import Vocoder, mel_fault
from vocoder.modules import AmplitudePhaseHead, Backbone, SpectrumPrediction
from vocoder.streaming import StreamingSynthesis

from . import bitstream, entropy
from .bitstream import BitstreamError, StreamHeader
from .config import CodecConfig, SpectralCodecConfig, WaveformCodecConfig
from .legacy import config_from_flat, flat_config
from .quantizer import GroupResidualQuantizer
from .spectral import MelDecoder, MelEncoder

if TYPE_CHECKING:
    from .streaming import StreamDecoder, StreamEncoder

DEFAULT_PRETRAINED = Path(__file__).parent / "pretrained" / "default"


@dataclass
class CodecOutput:
    """Result of the training pass ``Codec.forward``; each design adds what its loss compares."""

    codes: torch.Tensor  # [B, K, F]; -1 marks levels skipped by quantizer dropout
    quantizer_loss: torch.Tensor  # scalar commitment loss (zero in eval mode)


@dataclass
class SpectralCodecOutput(CodecOutput):
    mel: torch.Tensor  # decoded log-mel [B, n_mels, F * downsample]
    target_mel: torch.Tensor  # the input's log-mel, same shape


@dataclass
class WaveformCodecOutput(CodecOutput):
    audio: torch.Tensor  # [B, 1, T], same length as the input
    spectrum: Optional[SpectrumPrediction] = None  # the frame decoder's spectra


class FrameDecoder(nn.Module):
    """Quantized latent ``[B, D, F]`` -> ConvNeXt trunk -> amplitude/phase spectra -> ``F * hop`` samples."""

    def __init__(self, config: WaveformCodecConfig) -> None:
        super().__init__()
        self.backbone = Backbone(config.latent_dim, config.backbone)
        self.head = AmplitudePhaseHead(config.backbone.dim, config.n_fft, config.hop_length, config.win_length)

    def forward(self, latent: torch.Tensor) -> SpectrumPrediction:
        return self.head(self.backbone(latent))


def _quiet_seanet(build, **kwargs) -> nn.Module:
    # encodec 0.1.1 uses torch's deprecated weight_norm; the warning is about encodec, not the caller.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*weight_norm.*")
        return build(**kwargs)


def _without(config: Dict[str, Any], dotted: Tuple[str, ...]) -> Dict[str, Any]:
    """``config`` (a nested dict) less the fields and sub-configs named by dotted paths."""
    for name in dotted:
        *parents, leaf = name.split(".")
        node = config
        for key in parents:
            node = node[key]
        node.pop(leaf)
    return config


def _checked_mel(mel: torch.Tensor) -> torch.Tensor:
    """The spectral decoder's log-mel, or a ValueError for a caller who passed codes, not a mel."""
    fault = mel_fault(mel)
    if fault is not None:
        raise ValueError(f"decoding these codes gave a spectrum with {fault} (damaged codec weights?)")
    return mel


class Codec(nn.Module, Pretrained):
    """What every codec offers: a neural audio codec with group-residual vector quantization at
    16 kHz (or any rate). The designs are :class:`SpectralCodec` (shipped) and :class:`WaveformCodec`.

    >>> model = Codec.from_pretrained("path/to/model")       # either design; Codec(config) builds config's design
    >>> codes = model.encode(wav, sample_rate)               # LongTensor [B, K, F]
    >>> audio = model.decode(codes)                          # [B, 1, F * hop] at model.sample_rate
    >>> data = model.compress(wav, sample_rate, num_codebooks=2)   # .grvq bytes, 1 kbps
    >>> audio, sr = model.decompress(data)                   # trimmed to the input's duration

    A design sets ``encoder`` (waveform ``[B, 1, T]`` -> latent ``[B, D, T / hop]``) and ``decoder``,
    and implements :meth:`forward` (training) and :meth:`_synthesise_codes` (decoding).
    """

    config_class: ClassVar[type] = CodecConfig
    default_pretrained = DEFAULT_PRETRAINED
    training_fields = ("chunking", "quantizer.kmeans_init", "quantizer.kmeans_iters", "quantizer.ema_decay",
                       "quantizer.dead_code_threshold", "quantizer.commitment_weight", "quantizer.quantize_dropout")
    # Whether training judges its output with discriminators (it needs a waveform to judge).
    adversarial_training: ClassVar[bool] = False
    # Architecture fields a warm start may change (the weights still fit; the fingerprint follows the new value).
    warm_start_fields: ClassVar[Tuple[str, ...]] = ()
    companion_files = (entropy.TABLE_FILE,)

    def __new__(cls, config: Optional[CodecConfig] = None, *args: Any, **kwargs: Any) -> "Codec":
        # Codec(config) builds the design of ``config``, as Codec.from_pretrained loads either design.
        return super().__new__(design_of(config) if cls is Codec else cls)

    def __init__(self, config: CodecConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        super().__init__()
        self.config = config
        self.quantizer = GroupResidualQuantizer(config.latent_dim, config.quantizer)
        # ``kind`` and the other design's fields from the flat config.json this model was loaded
        # from, where they are not the defaults: its fingerprint hashes them (codec.legacy).
        self.legacy_fields: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------------------ saving, loading

    @classmethod
    def build_saved(cls, directory: Path) -> "Codec":
        """The codec a saved folder holds, of either design and either config form (weights not loaded)."""
        design, config, legacy = read_saved_codec(directory)
        if not issubclass(design, cls):
            raise CheckpointError(f"{directory} holds a {design.__name__}, not a {cls.__name__}")
        model = design(config)
        model.legacy_fields = legacy
        return model

    def save_pretrained(self, directory: Union[str, Path], half: bool = False) -> Path:
        """Save ``config.json`` (this design's config) + ``model.safetensors`` into ``directory``, and
        the model's entropy table as ``entropy_table.npz`` when one is registered for the codebooks as
        saved (a table there from earlier weights is removed)."""
        extra = {"legacy_fields": self.legacy_fields} if self.legacy_fields is not None else None
        folder = save_state(self, self.config, directory, half=half, extra=extra)
        table, path = entropy.table_for(self.fingerprint()), folder / entropy.TABLE_FILE
        if table is not None and (not half or table.fingerprint == self.fingerprint(half=True)):
            table.save(path)
            return folder
        path.unlink(missing_ok=True)
        if table is not None:
            warnings.warn(f"the entropy table of these float32 codebooks does not fit their float16 copy in {folder}: "
                          f"refit it there with python -m recipes.fit_entropy --model {folder} --manifest M")
        return folder

    def load_companions(self, directory: Path) -> None:
        """Register the entropy table saved beside the weights (``entropy_table.npz``), so that
        :meth:`compress` entropy-codes with it and streams coded with it decode; a table fitted for
        other weights is refused (refit it: ``python -m recipes.fit_entropy --model DIR``)."""
        path = Path(directory) / entropy.TABLE_FILE
        if not path.is_file():
            return
        try:
            table = entropy.EntropyTable.load(path)
        except entropy.EntropyError as err:
            raise CheckpointError(str(err)) from None
        if table.fingerprint != self.fingerprint():
            raise CheckpointError(f"{path} was fitted for another model (fingerprint {table.fingerprint.hex()}, "
                                  f"these weights {self.fingerprint().hex()}): refit it with python -m "
                                  f"recipes.fit_entropy --model {directory} --manifest M, or delete it")
        entropy.register_table(table)

    def load_weights_from(self, directory: Union[str, Path]) -> None:
        """Copy the weights of a saved codec of the same architecture into this one (warm start); the
        configs may differ in :attr:`training_fields`, which leaves the fingerprint the saved model's, and
        in :attr:`warm_start_fields` (a spectral codec made causal from an offline one), which changes it."""
        design, saved, legacy = read_saved_codec(Path(directory))
        if design is not type(self):
            raise CheckpointError(f"{directory} holds a {design.__name__}, not a {type(self).__name__}")
        differing = differing_fields(saved, self.config, self.training_fields + self.warm_start_fields)
        if differing:
            raise CheckpointError(f"{directory} holds a model of another configuration than this one "
                                  f"(differs in {', '.join(differing)})")
        load_state(self, directory)
        self.legacy_fields = legacy

    # ----------------------------------------------------------------------------------- properties

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_codebooks(self) -> int:
        return self.config.quantizer.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def bitrate(self) -> float:
        """Bits per second with all codebooks (2000 for the default 16 kHz, 4 x 1024 model)."""
        return self.bitrate_for(self.num_codebooks)

    @property
    def allowed_num_codebooks(self) -> List[int]:
        """Codebook counts :meth:`encode` accepts (multiples of the number of groups)."""
        return self.quantizer.allowed_num_codebooks

    def bitrate_for(self, num_codebooks: int) -> float:
        """Bits per second when coding with the first ``num_codebooks`` codebooks."""
        count = self.quantizer.check_num_codebooks(num_codebooks)
        return self.frame_rate * count * self.config.quantizer.bits_per_code

    def flat_config(self) -> Dict[str, Any]:
        """The config in the flat form of models saved before the designs split (:mod:`codec.legacy`)."""
        return flat_config(self.config, self.legacy_fields)

    def fingerprint(self, half: bool = False) -> bytes:
        """8-byte BLAKE2b digest of what a stream's codes mean: the architecture and the codebooks
        (``half``: as ``save_pretrained(half=True)`` stores them, rounded to float16).

        Left out: settings that only steer training or memory use (:attr:`training_fields`, chunking
        among them) and a spectral codec's vocoder but for its mel analysis, so a warm start that
        changes those settings, or another vocoder, leaves ``.grvq`` streams and LMs valid. The
        architecture is hashed in the flat form (:meth:`flat_config`) that existing streams carry.
        """
        arch = _without(self.flat_config(), self.training_fields)
        if "vocoder" in arch:
            arch["vocoder"] = {"mel": arch["vocoder"]["mel"]}  # the encoder's input; the rest makes no codes
        return self._digest(arch, half)

    def matches_fingerprint(self, fingerprint: bytes) -> bool:
        """Whether codes stamped with ``fingerprint`` are this model's: its :meth:`fingerprint`, or the
        earlier form of it (the whole config less chunking, vocoder included) that ``.grvq`` streams and
        ``codec.json`` files written before that form changed carry."""
        return fingerprint in (self.fingerprint(), self._digest(_without(self.flat_config(), ("chunking",))))

    def _digest(self, arch: Dict[str, Any], half: bool = False) -> bytes:
        digest = hashlib.blake2b(json.dumps(arch, sort_keys=True).encode(), digest_size=bitstream.FINGERPRINT_BYTES)
        for weights in self.quantizer.codebook_weights():
            weights = weights.half() if half else weights
            digest.update(weights.float().cpu().contiguous().numpy().astype("<f4").tobytes())
        return digest.digest()

    # -------------------------------------------------------------------------------------- training

    def forward(self, wav: torch.Tensor, num_codebooks: Optional[int] = None) -> CodecOutput:
        """Training pass on ``wav [B, 1, T]`` at :attr:`sample_rate`; quantizer dropout in train mode."""
        raise NotImplementedError

    def _padded(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, 1, T]`` zero-padded to whole frames, for :meth:`forward`."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"forward expects mono audio [B, 1, T], got {tuple(wav.shape)}")
        return F.pad(wav, (0, -wav.shape[-1] % self.hop_length))

    # ------------------------------------------------------------------------------------- inference

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def _chunks(self, num_frames: int, context: int, progress: Optional[bool], desc: str) -> Iterator[ChunkSpan]:
        spans = chunk_spans(num_frames, self.config.chunking.frames, context)
        show = len(spans) > 1 if progress is None else progress
        return iter(tqdm(spans, desc=desc, unit="chunk", disable=not show, leave=False))

    def encode(self, wav: ArrayLike, sample_rate: int, num_codebooks: Optional[int] = None,
               progress: Optional[bool] = None) -> torch.Tensor:
        """Codes ``LongTensor [B, K, F]`` of ``wav`` (``[T]``, ``[C, T]`` or ``[B, C, T]``, any rate;
        down-mixed to mono and resampled). ``K = num_codebooks`` (default all; a multiple of the
        number of groups), ``F = ceil(T / hop)`` at the model's rate. ``progress=None`` shows a
        progress bar when the input spans more than one chunk."""
        count = self.quantizer.check_num_codebooks(num_codebooks)
        return self._encode(prepare_waveform(wav, sample_rate, self.sample_rate), count, progress)

    def _encode(self, wav: torch.Tensor, num_codebooks: int, progress: Optional[bool]) -> torch.Tensor:
        batch, _, length = wav.shape
        hop, device = self.hop_length, self.device
        num_frames = math.ceil(length / hop)
        # Allocated outside inference mode, so callers may feed the codes to models they train.
        codes = torch.empty(batch, num_codebooks, num_frames, dtype=torch.long, device=device)
        with self._evaluating(), torch.inference_mode():
            for span in self._chunks(num_frames, self.config.chunking.encode_context, progress, "encoding"):
                first, last = span.context_start * hop, span.context_stop * hop
                # Slice before padding so a long input is never copied whole; the last chunk is
                # zero-padded to whole frames exactly as a whole-signal pass would be.
                piece = wav[..., first:min(last, length)].to(device)
                piece = F.pad(piece, (0, last - first - piece.shape[-1]))
                latent = self.encoder(piece)[..., span.offset:span.offset + span.stop - span.start]
                codes[..., span.start:span.stop] = self.quantizer.encode(latent, num_codebooks)
        return codes

    def _check_codes(self, codes: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(codes)
        if not isinstance(codes, torch.Tensor):
            raise ValueError(f"codes must be a tensor or numpy array, got {type(codes).__name__}")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        if codes.dim() != 3 or codes.shape[0] == 0 or codes.shape[-1] == 0:
            raise ValueError(f"codes must be shaped [B, K, F] with B, F >= 1, got {tuple(codes.shape)}")
        self.quantizer.check_num_codebooks(codes.shape[1])
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got {int(codes.min())}..{int(codes.max())}")
        return codes.long()

    def decode(self, codes: Union[torch.Tensor, np.ndarray], progress: Optional[bool] = None,
               refine: Optional[int] = None) -> torch.Tensor:
        """Waveform ``[B, 1, F * hop]`` at :attr:`sample_rate` from codes ``[B, K, F]`` (any valid ``K``).

        ``refine`` (:class:`SpectralCodec` only): phase refinement iterations of its vocoder, ``None``
        for the vocoder's default (see :meth:`vocoder.Vocoder.decode`), ``0`` for the network alone."""
        return self._decode(self._check_codes(codes), progress, self._check_refine(refine))

    def _check_refine(self, refine: Optional[int]) -> Optional[int]:
        if refine is not None:
            raise ValueError(f"refine applies to the spectral codec only; this {type(self).__name__} has no vocoder")
        return refine

    def _decode(self, codes: torch.Tensor, progress: Optional[bool], refine: Optional[int] = None) -> torch.Tensor:
        audio = self._synthesise_codes(codes, progress, refine)
        if not torch.isfinite(audio).all():
            raise ValueError("decoding these codes gave NaN or infinite samples (damaged codec weights?)")
        return audio

    def _synthesise_codes(self, codes: torch.Tensor, progress: Optional[bool], refine: Optional[int]) -> torch.Tensor:
        """Waveform ``[B, 1, F * hop]`` of checked codes ``[B, K, F]``, chunk by chunk."""
        raise NotImplementedError

    def _decode_frames(self, codes: torch.Tensor, progress: Optional[bool], channels: int, scale: int,
                       decode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``decode`` (latent ``[B, D, F]`` -> ``[B, channels, F * scale]``) chunk by chunk with context."""
        batch, _, num_frames = codes.shape
        out = torch.empty(batch, channels, num_frames * scale, device=self.device)  # a normal tensor, as in _encode
        with self._evaluating(), torch.inference_mode():
            for span in self._chunks(num_frames, self.config.chunking.decode_context, progress, "decoding"):
                latent = self.quantizer.decode(codes[..., span.context_start:span.context_stop].to(self.device))
                keep = decode(latent)[..., span.offset * scale:(span.offset + span.stop - span.start) * scale]
                out[..., span.start * scale:span.stop * scale] = keep
        return out

    # ------------------------------------------------------------------------------------- streaming

    @property
    def streaming(self) -> bool:
        """Whether this codec can code a live stream (:meth:`stream_encoder`): a causal design."""
        return False

    def stream_encoder(self, num_codebooks: Optional[int] = None) -> "StreamEncoder":
        """A :class:`~codec.streaming.StreamEncoder`: push PCM of any chunk size, get one packet per code
        frame. Only a causal codec streams (``SpectralCodecConfig.streaming()``)."""
        from .streaming import StreamEncoder
        return StreamEncoder(self, num_codebooks)

    def stream_decoder(self) -> "StreamDecoder":
        """A :class:`~codec.streaming.StreamDecoder`: push packets (``None`` for a lost one), get PCM."""
        from .streaming import StreamDecoder
        return StreamDecoder(self)

    def compress(self, wav: ArrayLike, sample_rate: int, num_codebooks: Optional[int] = None,
                 progress: Optional[bool] = None, normalize: bool = True,
                 entropy_coding: bool = bitstream.ENTROPY_CODING_DEFAULT) -> bytes:
        """Encode ``wav`` (any layout and rate) into a ``.grvq`` stream (see :mod:`codec.bitstream`).

        ``normalize`` (the default) brings each signal to the training corpus's level (-20 dBFS RMS)
        before encoding and stores the gain that restores its own level, as EnCodec does: quiet and
        loud recordings then code as well as the corpus level, and decompress returns them at their level.
        ``entropy_coding`` arithmetic-codes the codes with the model's integer context model
        (:mod:`codec.entropy`, format version 3) when the model has a table (shipped, or beside its
        weights) and that is smaller.
        """
        count = self.quantizer.check_num_codebooks(num_codebooks)
        prepared = prepare_waveform(wav, sample_rate, self.sample_rate)
        gains = level_gains(prepared, step_db=bitstream.GAIN_STEP_DB) if normalize else torch.zeros(prepared.shape[0])
        codes = self._encode(apply_gains(prepared, gains), count, progress)
        header = StreamHeader(
            sample_rate=self.sample_rate, batch=codes.shape[0], length=prepared.shape[-1], num_codebooks=count,
            codebook_size=self.codebook_size, hop_length=self.hop_length, num_frames=codes.shape[-1],
            fingerprint=self.fingerprint(), gains_db=tuple(float(-g) for g in gains))
        return bitstream.pack(header, codes.cpu().numpy(), entropy_coding=entropy_coding)

    def check_stream(self, header: StreamHeader) -> None:
        """Raise :class:`BitstreamError` unless a stream with ``header`` was made by this model."""
        mismatches: List[str] = [
            f"{name} {got} (model: {want})"
            for name, got, want in (("sample rate", header.sample_rate, self.sample_rate),
                                    ("codebook size", header.codebook_size, self.codebook_size),
                                    ("hop length", header.hop_length, self.hop_length))
            if got != want
        ]
        if mismatches:
            raise BitstreamError("stream does not fit this model: " + ", ".join(mismatches))
        try:
            self.quantizer.check_num_codebooks(header.num_codebooks)
        except ValueError as err:
            raise BitstreamError(f"stream does not fit this model: {err}") from None
        if not self.matches_fingerprint(header.fingerprint):
            raise BitstreamError("stream was made by a different model (fingerprint mismatch)")

    def decompress(self, data: bytes, progress: Optional[bool] = None,
                   refine: Optional[int] = None) -> Tuple[torch.Tensor, int]:
        """Decode a ``.grvq`` stream: ``(audio [B, 1, T], sample_rate)`` with ``T`` the original length
        (``refine`` as in :meth:`decode`)."""
        refine = self._check_refine(refine)
        header, codes = bitstream.unpack(data)
        self.check_stream(header)
        audio = self._decode(torch.from_numpy(codes), progress, refine)
        return apply_gains(audio[..., :header.length], torch.tensor(header.gains())), self.sample_rate


class SpectralCodec(Codec):
    """The shipped design: the log-mel of the waveform is encoded, quantized and decoded back to a
    log-mel, which the codec's own :class:`~vocoder.Vocoder` (with phase refinement) turns into a
    waveform. It trains on mel frames only (:class:`~codec.training.SpectralCodecLoss`)."""

    config_class = SpectralCodecConfig
    warm_start_fields = ("causal",)  # an offline codec's weights start the streaming one (same names and shapes)

    def __init__(self, config: Optional[SpectralCodecConfig] = None) -> None:
        config = config or SpectralCodecConfig()
        super().__init__(config)
        self.encoder = MelEncoder(config.vocoder.mel, config.spectral, config.latent_dim, causal=config.causal)
        self.decoder = MelDecoder(config.vocoder.mel, config.spectral, config.latent_dim, causal=config.causal)
        self.vocoder = Vocoder(config.vocoder)
        # The causal codec synthesises as it streams (no buffers in the state dict: the same weights).
        self.synthesis = StreamingSynthesis(self.encoder.frontend) if config.causal else None

    @property
    def streaming(self) -> bool:
        return self.config.causal

    def load_vocoder(self, vocoder: Vocoder) -> None:
        """Put a (trained) :class:`~vocoder.Vocoder` into this codec: a copy of its weights and its
        config, which may differ from the codec's previous vocoder (same mel analysis)."""
        if vocoder.config.mel != self.config.vocoder.mel:
            raise ValueError("the vocoder's mel analysis differs from the codec's: its mels would not fit")
        replacement = Vocoder(vocoder.config).to(self.device)
        replacement.load_state_dict(vocoder.state_dict())
        self.vocoder = replacement.train(self.training)
        self.config = replace(self.config, vocoder=vocoder.config)

    def forward(self, wav: torch.Tensor, num_codebooks: Optional[int] = None) -> SpectralCodecOutput:
        """Training pass: the decoded and the input log-mel (no waveform: it trains on mel frames)."""
        with torch.no_grad():
            target_mel = self.encoder.frontend(self._padded(wav))
        quantized = self.quantizer(self.encoder.encode_mel(target_mel), num_codebooks)
        return SpectralCodecOutput(quantized.codes, quantized.loss, self.decoder(quantized.quantized), target_mel)

    def _check_refine(self, refine: Optional[int]) -> Optional[int]:
        if self.config.causal and refine:
            raise ValueError("the causal codec synthesises as it streams, without phase refinement: leave refine unset")
        return refine  # the vocoder checks the value

    def _synthesise_codes(self, codes: torch.Tensor, progress: Optional[bool], refine: Optional[int]) -> torch.Tensor:
        """The log-mel chunk by chunk, then the vocoder, whose blocks carry the phase across, so
        chunked decoding equals decoding the whole signal at once. A causal codec synthesises the mel
        code frame by code frame with :class:`~vocoder.streaming.StreamingSynthesis`, exactly as its
        :class:`~codec.streaming.StreamDecoder` does."""
        downsample = self.config.spectral.downsample
        mel = _checked_mel(self._decode_frames(codes, progress, self.vocoder.n_mels, downsample, self.decoder))
        if self.synthesis is not None:
            with torch.inference_mode():
                state = self.synthesis.initial_state(mel.shape[0], mel.device)
                pieces = [self.synthesis.step(mel[..., first:first + downsample], state)
                          for first in range(0, mel.shape[-1], downsample)]
                audio = torch.cat([*pieces, self.synthesis.flush(state)], -1)
            return audio[:, None].clone()  # a normal tensor, as in _encode
        with self._evaluating():
            return self.vocoder.decode(mel, refine=refine, chunk_frames=self.config.chunking.frames * downsample,
                                       progress=progress)


class WaveformCodec(Codec):
    """The waveform design: a SEANet encoder on the waveform and a waveform decoder (the frame-level
    decoder, or EnCodec's SEANet decoder), trained end to end against discriminators."""

    config_class = WaveformCodecConfig
    default_pretrained = None  # none ships
    adversarial_training = True

    def __init__(self, config: Optional[WaveformCodecConfig] = None) -> None:
        config = config or WaveformCodecConfig()
        super().__init__(config)
        self.encoder = _quiet_seanet(
            SEANetEncoder, channels=1, dimension=config.latent_dim, n_filters=config.encoder_filters,
            n_residual_layers=config.encoder_residual_layers, ratios=list(config.strides),
            lstm=config.encoder_lstm_layers)
        if config.decoder == "frame":
            self.decoder: nn.Module = FrameDecoder(config)
        else:
            self.decoder = _quiet_seanet(
                SEANetDecoder, channels=1, dimension=config.latent_dim, n_filters=config.conv_decoder_filters,
                n_residual_layers=config.encoder_residual_layers,  # mirrors the encoder
                ratios=list(config.strides), lstm=config.conv_decoder_lstm_layers)

    def _synthesise(self, latent: torch.Tensor) -> Tuple[torch.Tensor, Optional[SpectrumPrediction]]:
        """Quantized latent ``[B, D, F]`` -> waveform ``[B, 1, F * hop]`` (and spectra, frame decoder)."""
        if isinstance(self.decoder, FrameDecoder):
            spectrum = self.decoder(latent)
            return spectrum.waveform, spectrum
        return self.decoder(latent), None

    def forward(self, wav: torch.Tensor, num_codebooks: Optional[int] = None) -> WaveformCodecOutput:
        """Training pass: the decoded waveform, as long as ``wav`` (and the frame decoder's spectra)."""
        quantized = self.quantizer(self.encoder(self._padded(wav)), num_codebooks)
        audio, spectrum = self._synthesise(quantized.quantized)
        return WaveformCodecOutput(quantized.codes, quantized.loss, audio[..., :wav.shape[-1]], spectrum)

    def _synthesise_codes(self, codes: torch.Tensor, progress: Optional[bool], refine: Optional[int]) -> torch.Tensor:
        return self._decode_frames(codes, progress, 1, self.hop_length, lambda latent: self._synthesise(latent)[0])


CODECS = {design.__name__: design for design in (SpectralCodec, WaveformCodec)}


def design_of(config: Optional[CodecConfig]) -> type:
    """The codec class of ``config``'s design."""
    for design in CODECS.values():
        if type(config) is design.config_class:
            return design
    raise TypeError(f"Codec(config) takes a SpectralCodecConfig or a WaveformCodecConfig, got {type(config).__name__}")


def read_saved_codec(directory: Path) -> Tuple[type, CodecConfig, Optional[Dict[str, Any]]]:
    """The design, config and legacy fields (see :attr:`Codec.legacy_fields`) of a saved codec: a
    ``config.json`` of class ``SpectralCodec`` or ``WaveformCodec``, or of class ``Codec`` with the
    flat config of models saved before the designs split (:mod:`codec.legacy`)."""
    payload = read_payload(directory)
    where, name = str(Path(directory) / "config.json"), payload.get("class")
    if name == "Codec":
        config, legacy = config_from_flat(payload["config"], where)
        return design_of(config), config, legacy
    if name not in CODECS:
        raise CheckpointError(f"{where} holds a {name!r} model, expected a codec ({' or '.join(CODECS)})")
    design = CODECS[name]
    legacy = payload.get("legacy_fields")
    if legacy is not None and not isinstance(legacy, dict):
        raise CheckpointError(f"{where}: legacy_fields must be a JSON object")
    return design, config_from_dict(design.config_class, payload["config"], where), legacy
