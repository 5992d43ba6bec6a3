"""ONNX export of the vocoder's generator: log-mel ``[B, n_mels, N]`` -> waveform ``[B, 1, N * hop]``.

The graph holds the backbone, the amplitude/phase head and the real-valued inverse STFT (matrix
products and shifted additions only), with dynamic batch and frame axes: the pure network path,
``Vocoder.decode(mel, refine=0)``. Phase refinement (complex STFTs in a loop, PGHI) is not in the
graph: use ``Vocoder.decode(mel, refine=K)`` in PyTorch for it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import torch
from torch import nn

from .model import Vocoder


class _Generator(nn.Module):
    """The mel -> waveform path of a :class:`Vocoder`, without its dataclass output."""

    def __init__(self, vocoder: Vocoder) -> None:
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel).waveform


def export_onnx(vocoder: Vocoder, path: Union[str, Path], frames: int = 64, opset: int = 17) -> Path:
    """Write the generator of ``vocoder`` to ``path`` (input ``mel``, output ``waveform``).

    ``frames`` only sizes the example input used for tracing; the exported frame axis is dynamic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = _Generator(vocoder).eval()
    example = torch.randn(1, vocoder.n_mels, frames, device=vocoder.device)
    with torch.no_grad(), warnings.catch_warnings():
        # The overlap-add's strided slices cannot be constant-folded; harmless, and noisy.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            generator,
            (example,),
            str(path),
            input_names=["mel"],
            output_names=["waveform"],
            dynamic_axes={"mel": {0: "batch", 2: "frames"}, "waveform": {0: "batch", 2: "samples"}},
            opset_version=opset,
            dynamo=False,
        )
    return path
