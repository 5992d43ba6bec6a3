"""Log-mel spectrogram pictures, drawn with numpy and Pillow (no plotting library needed).

The analysis is the toolkit's one mel frontend, :class:`vocoder.spectral.MelSpectrogram`, so the
pictures show exactly what the models' mel losses see.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vocoder.audio import ArrayLike, as_batch
from vocoder.spectral import MelConfig, MelSpectrogram

# A few anchor colours of matplotlib's "inferno" map; values in between are interpolated.
_INFERNO = np.array(
    [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99),
     (212, 72, 66), (245, 125, 21), (250, 193, 39), (252, 255, 164)],
    dtype=np.float64,
)
_MARKER_RGB = (0, 230, 255)  # cyan: absent from inferno, so the marker never blends in
_AXIS_HEIGHT = 18


@lru_cache(maxsize=4)
def _mel_frontend(sample_rate: int) -> MelSpectrogram:
    """80 mel bands, 10 ms hop, 40 ms window, for any sample rate."""
    hop = 2 * max(1, round(sample_rate / 200))  # even hop keeps n_fft - hop even ("same" framing)
    config = MelConfig(sample_rate=sample_rate, n_fft=4 * hop, hop_length=hop, win_length=4 * hop, n_mels=80)
    return MelSpectrogram(config).eval()


def _colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB through the inferno anchors."""
    positions = np.linspace(0.0, 1.0, len(_INFERNO))
    rgb = np.stack([np.interp(values, positions, _INFERNO[:, c]) for c in range(3)], axis=-1)
    return rgb.round().astype(np.uint8)


def _time_axis(width: int, seconds: float) -> Image.Image:
    """A strip with a tick and a label every 1, 2, 5, ... seconds (about eight ticks at most)."""
    strip = Image.new("RGB", (width, _AXIS_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=12)
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600) if seconds / s <= 8)
    for k in range(int(seconds / step) + 1):
        x = min(width - 1, round(k * step / seconds * width))
        draw.line([(x, 0), (x, 4)], fill=(0, 0, 0))
        label = f"{k * step:g} s"
        text_width = draw.textlength(label, font=font)
        draw.text((min(max(0, x - text_width / 2), width - text_width), 5), label, fill=(0, 0, 0), font=font)
    return strip


def spectrogram_image(
    wav: ArrayLike,
    sample_rate: int,
    marker_seconds: Optional[float] = None,
    width: int = 800,
    height: int = 200,
    dynamic_range: float = 8.0,
) -> np.ndarray:
    """Draw the log-mel spectrogram of mono ``wav`` as an RGB image ``[height + axis, width, 3]``.

    Low frequencies are at the bottom; the ``dynamic_range`` (natural-log units, 8 = 70 dB) below
    the loudest bin spans the colour map. ``marker_seconds`` draws a vertical cyan line there (used
    to show where a continuation prompt ends). A time axis in seconds runs along the bottom.
    """
    signal = as_batch(wav)[0].mean(dim=0, keepdim=True)  # [1, T], first item of a batch
    frontend = _mel_frontend(int(sample_rate))
    hop = frontend.config.hop_length
    if signal.shape[-1] < hop:  # at least one frame
        signal = torch.nn.functional.pad(signal, (0, hop - signal.shape[-1]))
    with torch.no_grad():
        log_mel = frontend(signal)[0].cpu().numpy()  # [n_mels, frames]
    top = float(log_mel.max())
    scaled = np.clip((log_mel - (top - dynamic_range)) / dynamic_range, 0.0, 1.0)
    picture = Image.fromarray(_colorize(scaled[::-1])).resize((width, height), Image.Resampling.BILINEAR)
    seconds = signal.shape[-1] / sample_rate
    if marker_seconds is not None:
        x = min(width - 2, max(0, round(marker_seconds / seconds * width)))
        ImageDraw.Draw(picture).rectangle([(x, 0), (x + 1, height - 1)], fill=_MARKER_RGB)
    canvas = Image.new("RGB", (width, height + _AXIS_HEIGHT), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    canvas.paste(_time_axis(width, seconds), (0, height))
    return np.asarray(canvas)
