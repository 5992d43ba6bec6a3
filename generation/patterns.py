"""Codebook interleaving patterns: how ``K`` parallel codebooks become one autoregressive sequence.

A pattern is a pure mapping between codec codes ``[B, K, F]`` (``F`` frames) and the language
model's sequence ``[B, K, S]`` (``S`` steps). At each step the model predicts all ``K`` slots at
once; slots the pattern leaves empty hold the special token (id ``codebook_size``) and are
masked out of the loss.

- ``delay`` (default, MusicGen / AudioGen): codebook ``k`` is shifted right by ``k`` steps, so
  codebook ``k`` of frame ``f`` is predicted after codebooks ``0..k-1`` of that frame.
  ``S = F + K - 1``.
- ``parallel``: all codebooks of a frame at the same step. ``S = F``.
- ``flatten``: one codebook per step, frame after frame. ``S = F * K``.

Every pattern is described by one integer map ``steps[k, f]`` (the step holding codebook ``k`` of
frame ``f``); building is a scatter along that map and reverting a gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

PATTERNS = ("delay", "parallel", "flatten")


@dataclass(frozen=True)
class CodebookPattern:
    """The interleaving pattern ``name`` for ``num_codebooks`` codebooks."""

    name: str
    num_codebooks: int

    def __post_init__(self) -> None:
        if self.name not in PATTERNS:
            raise ValueError(f"unknown codebook pattern {self.name!r}; expected one of {PATTERNS}")
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks must be positive, got {self.num_codebooks}")

    def sequence_length(self, num_frames: int) -> int:
        """Number of steps ``S`` that hold ``num_frames`` frames."""
        if num_frames <= 0:
            return 0
        k = self.num_codebooks
        return {"delay": num_frames + k - 1, "parallel": num_frames, "flatten": num_frames * k}[self.name]

    def max_frames(self, num_steps: int) -> int:
        """The most frames whose whole sequence fits in ``num_steps`` steps."""
        k = self.num_codebooks
        frames = {"delay": num_steps - k + 1, "parallel": num_steps, "flatten": num_steps // k}[self.name]
        return max(frames, 0)

    def steps(self, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``LongTensor [K, F]``: the step that holds codebook ``k`` of frame ``f``."""
        k = torch.arange(self.num_codebooks, device=device)[:, None]
        f = torch.arange(num_frames, device=device)[None, :]
        if self.name == "delay":
            return f + k
        if self.name == "parallel":
            return f.expand(self.num_codebooks, -1).clone()
        return f * self.num_codebooks + k

    def valid_mask(self, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``BoolTensor [K, S]``: True where the sequence holds a real code."""
        mask = torch.zeros(self.num_codebooks, self.sequence_length(num_frames), dtype=torch.bool, device=device)
        return mask.scatter_(1, self.steps(num_frames, device), True)

    def build(self, codes: torch.Tensor, special_token: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Codes ``[B, K, F]`` -> (sequence ``[B, K, S]`` with ``special_token`` in empty slots, valid mask ``[K, S]``)."""
        batch, num_codebooks, num_frames = self._check(codes)
        steps = self.steps(num_frames, codes.device)
        seq = codes.new_full((batch, num_codebooks, self.sequence_length(num_frames)), special_token)
        seq.scatter_(2, steps.expand(batch, -1, -1), codes)
        return seq, self.valid_mask(num_frames, codes.device)

    def revert(self, seq: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Sequence ``[B, K, S]`` -> the ``num_frames`` frames of codes ``[B, K, F]`` it holds."""
        batch, num_codebooks, num_steps = self._check(seq)
        if num_steps < self.sequence_length(num_frames):
            raise ValueError(f"a {self.name} sequence of {num_steps} steps holds fewer than {num_frames} frames")
        steps = self.steps(num_frames, seq.device)
        return seq.gather(2, steps.expand(batch, -1, -1))

    def _check(self, tensor: torch.Tensor) -> Tuple[int, int, int]:
        if tensor.dim() != 3 or tensor.shape[1] != self.num_codebooks:
            raise ValueError(f"expected a [B, {self.num_codebooks}, T] tensor, got {tuple(tensor.shape)}")
        return tuple(tensor.shape)  # type: ignore[return-value]
