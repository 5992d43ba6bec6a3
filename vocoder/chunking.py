"""Splitting a long frame sequence into chunks with context, so memory stays bounded.

Each chunk keeps frames ``[start, stop)`` and is computed from ``[context_start, context_stop)``:
up to ``context`` extra frames on each side, which give the network the neighbourhood it would
have seen on the whole signal and are then discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List


@dataclass(frozen=True)
class ChunkSpan:
    """Frames kept (``start:stop``) and frames computed (``context_start:context_stop``)."""

    start: int
    stop: int
    context_start: int
    context_stop: int

    @property
    def offset(self) -> int:
        """Position of ``start`` inside the computed frames."""
        return self.start - self.context_start


def chunk_spans(num_frames: int, chunk_frames: int, context: int) -> List[ChunkSpan]:
    """Cover ``num_frames`` frames with chunks of ``chunk_frames`` (the last may be shorter)."""
    if num_frames < 1 or chunk_frames < 1 or context < 0:
        raise ValueError(f"need num_frames >= 1, chunk_frames >= 1, context >= 0; got {num_frames}, {chunk_frames}, {context}")
    return [
        ChunkSpan(start, min(start + chunk_frames, num_frames),
                  max(0, start - context), min(num_frames, start + chunk_frames + context))
        for start in range(0, num_frames, chunk_frames)
    ]
