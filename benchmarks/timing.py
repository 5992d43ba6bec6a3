"""Timing helpers shared by the benchmarks: side-by-side runs with interleaved repeats."""

from __future__ import annotations

import time
from typing import Callable, Dict, List

import torch


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def interleaved_timings(runs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Wall times of each run, after one warm-up each, with the repeats interleaved so that load
    from other processes hits every contender alike."""
    for run in runs.values():
        run()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times
