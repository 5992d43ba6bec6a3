"""Next-token sampling: temperature, top-k, top-p and classifier-free guidance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

MAX_CFG_COEF = 100.0
DEFAULT_CFG_COEF = 3.0  # AudioGen's guidance scale


@dataclass(frozen=True)
class SamplingParams:
    """How a token is drawn from the logits.

    ``temperature == 0`` is greedy decoding. ``top_k == 0`` and ``top_p == 0`` switch those
    filters off; when both are set, top-k is applied first, then top-p on what is left.
    """

    # 0.8, not AudioGen's 1.0: better on the shipped model (generation model card, "Sampling temperature").
    temperature: float = 0.8
    top_k: int = 250
    top_p: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer (0 = off), got {self.top_k!r}")
        if not _is_real(self.top_p) or not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1] (0 = off), got {self.top_p!r}")
        if not _is_real(self.temperature) or not 0.0 <= self.temperature <= 100.0:
            raise ValueError(f"temperature must be in [0, 100] (0 = greedy), got {self.temperature!r}")


def check_cfg_coef(cfg_coef: float) -> float:
    """Validate a classifier-free guidance coefficient (1 = plain conditional sampling)."""
    if not _is_real(cfg_coef) or not 0.0 <= cfg_coef <= MAX_CFG_COEF:
        raise ValueError(f"cfg_coef must be a number in [0, {MAX_CFG_COEF:g}], got {cfg_coef!r}")
    return float(cfg_coef)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def classifier_free_guidance(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """``uncond + γ·(cond − uncond)``: γ = 1 is the conditional model, γ > 1 follows the text harder."""
    return uncond_logits + cfg_coef * (cond_logits - uncond_logits)


def sample_tokens(logits: torch.Tensor, params: SamplingParams, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Draw one token per row of ``logits [..., V]``; returns a LongTensor shaped ``[...]``."""
    logits = logits.float()
    if params.temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = logits.topk(params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = logits.softmax(dim=-1)
    if params.top_p > 0.0:
        probs = _nucleus(probs, params.top_p)
    flat = probs.reshape(-1, vocab)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p`` (always at least one)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


DEFAULT_SAMPLING = SamplingParams()  # the one home of the sampling defaults (API, CLI and demo)
