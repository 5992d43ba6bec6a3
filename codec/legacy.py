"""The flat config form of codecs saved before the spectral and waveform designs got classes of their own.

One dataclass held both designs then (``kind`` chose; a file without ``kind`` predates the spectral
design), so each ``config.json`` of class ``Codec`` also carries the other design's fields, unused.
The fingerprint that ``.grvq`` streams and LMs carry hashes that flat form, so :func:`flat_config`
rebuilds it exactly: the model's own fields plus the unused ones, as its file had them or, for a
model built since, as the flat defaults were (:data:`UNUSED_DEFAULTS`, frozen).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, Optional, Tuple

from vocoder.checkpoint import CheckpointError, coerce_value, config_from_dict, config_to_dict

from .config import CodecConfig, SpectralCodecConfig, WaveformCodecConfig

# What the flat form held beyond a design's own fields: its name and the other design's fields.
SPECTRAL_ONLY = ("spectral", "vocoder")
WAVEFORM_ONLY = ("strides", "encoder_filters", "encoder_residual_layers", "encoder_lstm_layers", "decoder",
                 "backbone", "n_fft", "win_length", "conv_decoder_filters", "conv_decoder_lstm_layers")
UNUSED = {SpectralCodecConfig: WAVEFORM_ONLY, WaveformCodecConfig: SPECTRAL_ONLY}

_STAGE = {"kind": "convnext", "dim": 256, "intermediate_dim": 768, "input_kernel_size": 7}
# The unused fields as CodecConfig() and CodecConfig.waveform() filled them when the designs split;
# literal, so that later changes to the defaults of SpectralConfig or VocoderConfig move no fingerprint.
UNUSED_DEFAULTS: Dict[type, Dict[str, Any]] = {
    SpectralCodecConfig: {
        "kind": "spectral", "strides": [8, 5, 4, 2], "encoder_filters": 32, "encoder_residual_layers": 1,
        "encoder_lstm_layers": 0, "decoder": "frame", "backbone": {**_STAGE, "num_layers": 8}, "n_fft": 1280,
        "win_length": 1280, "conv_decoder_filters": 32, "conv_decoder_lstm_layers": 0,
    },
    WaveformCodecConfig: {
        "kind": "waveform",
        "spectral": {"downsample": 2, "mel_stage": {**_STAGE, "num_layers": 3}, "code_stage": {**_STAGE, "num_layers": 3},
                     "mel_mean": -5.0, "mel_scale": 3.0},
        "vocoder": {"mel": {"sample_rate": 16000, "n_fft": 640, "hop_length": 160, "win_length": 640, "n_mels": 80,
                            "f_min": 0.0, "f_max": None, "log_floor": 1e-05},
                    "backbone": {**_STAGE, "num_layers": 8}, "n_fft": 640, "win_length": 640,
                    "amplitude_prior": True, "learned_amplitude": False},
    },
}


def flat_config(config: CodecConfig, unused: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The flat form of ``config``: its own fields, ``sample_rate``, and ``unused`` (``kind`` and the
    other design's fields as a saved file had them; default :data:`UNUSED_DEFAULTS`)."""
    unused = UNUSED_DEFAULTS[type(config)] if unused is None else unused
    own = config_to_dict(config)
    if own.get("causal") is False:  # newer than the flat form: only a causal (streaming) codec hashes it
        del own["causal"]
    return {"sample_rate": config.sample_rate, **own, **unused}


def config_from_flat(data: Any, where: str = "config") -> Tuple[CodecConfig, Optional[Dict[str, Any]]]:
    """The config of a flat-form ``data`` and its unused entries (``None`` where they are the
    defaults, so the model needs to remember nothing), checked as the flat dataclass checked them."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object for a codec config")
    kind = data.get("kind", WaveformCodecConfig.kind)
    cls = {c.kind: c for c in UNUSED}.get(kind)
    if cls is None:
        raise CheckpointError(f"{where}: kind must be one of {sorted(c.kind for c in UNUSED)}, got {kind!r}")
    own = {f.name for f in dataclasses.fields(cls)}
    other = set(UNUSED[cls])
    unknown = sorted(set(data) - own - other - {"kind", "sample_rate"})
    if unknown:
        raise CheckpointError(f"{where}: unknown codec config fields {unknown}")
    config = config_from_dict(cls, {k: v for k, v in data.items() if k in own}, where)
    if "sample_rate" in data and cls is SpectralCodecConfig:
        rate = coerce_value(data["sample_rate"], int, f"{where}.sample_rate")
        if rate != config.sample_rate:
            raise CheckpointError(f"{where}: the vocoder's mel sample rate ({config.sample_rate}) must equal "
                                  f"the codec's ({rate})")
    # Typed as the flat dataclass typed them (the fingerprint hashes their JSON, 2 and 2.0 differ).
    hints = typing.get_type_hints(SpectralCodecConfig if cls is WaveformCodecConfig else WaveformCodecConfig)
    unused = {name: _plain(coerce_value(value, hints[name], f"{where}.{name}"))
              for name, value in data.items() if name in other}
    if "kind" in data:
        unused["kind"] = kind
    return config, (None if unused == UNUSED_DEFAULTS[cls] else unused)


def _plain(value: Any) -> Any:
    """``value`` (a config, tuple or scalar) as JSON data."""
    return json.loads(json.dumps(config_to_dict(value) if dataclasses.is_dataclass(value) else value))
