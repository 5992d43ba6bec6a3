"""The audio language model: a decoder-only transformer over interleaved codec tokens.

audiocraft's LM, written out nanoGPT-style: one embedding table per codebook (summed), pre-norm
blocks with causal self-attention, cross-attention to the text states *with* their padding mask,
and one linear head per codebook. Inference uses a preallocated key/value cache, so each step
writes one position instead of re-concatenating the whole past.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from vocoder.checkpoint import Pretrained

from .conditioners import TextCondition
from .patterns import PATTERNS, CodebookPattern
from .sampling import SamplingParams, classifier_free_guidance, sample_tokens

POSITIONAL = ("sinusoidal", "learned")


@dataclass
class LMConfig:
    """Shape of an :class:`AudioLanguageModel` and the codec/text interfaces it expects.

    The defaults are the intended shipped size (22 M parameters): 4 codebooks x 1024 at 50 Hz
    (16 kHz codec), 10 s of audio in one 512-step context, MiniLM text states. Per step the CPU
    cost is reading the weights once (a doubled CFG batch of 2 is memory-bound), so the size is
    chosen for real-time generation on 2 CPU cores (see ``benchmarks/bench_generation.py``).
    """

    num_codebooks: int = 4
    codebook_size: int = 1024
    dim: int = 384
    num_layers: int = 8
    num_heads: int = 6
    ffn_dim: int = 1536
    max_seq_len: int = 512
    text_dim: int = 384
    pattern: str = "delay"
    conditioner: str = "minilm"
    positional: str = "sinusoidal"
    dropout: float = 0.0
    cfg_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("num_codebooks", "codebook_size", "dim", "num_layers", "num_heads", "ffn_dim", "max_seq_len", "text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; expected one of {PATTERNS}")
        if self.positional not in POSITIONAL:
            raise ValueError(f"unknown positional embedding {self.positional!r}; expected one of {POSITIONAL}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1) and cfg_dropout in [0, 1], got {self.dropout}, {self.cfg_dropout}")

    @classmethod
    def small(cls, **overrides) -> "LMConfig":
        """A small model (about 1 M parameters, hashed text) for demos and smoke runs with random weights."""
        base = dict(dim=128, num_layers=2, num_heads=4, ffn_dim=256, conditioner="hashed:64", text_dim=64)
        return cls(**{**base, **overrides})

    @property
    def special_token(self) -> int:
        """Token id for slots the pattern leaves empty (and the start of the sequence)."""
        return self.codebook_size


@dataclass
class LMLoss:
    """Cross-entropy over valid pattern positions: ``total`` is the mean of ``per_codebook [K]``."""

    total: torch.Tensor
    per_codebook: torch.Tensor


@dataclass
class KVCache:
    """Preallocated self-attention keys/values ``[B, H, max_seq_len, head_dim]`` per layer, plus
    the cross-attention keys/values of the text (computed on the first call, so a cache belongs
    to one condition)."""

    keys: List[torch.Tensor]
    values: List[torch.Tensor]
    length: int = 0
    text_kv: List[Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]


class SelfAttention(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).split(dim, dim=2))
        offset = 0
        if cache is not None:
            offset = cache.length
            cache.keys[layer][:, :, offset:offset + length] = k
            cache.values[layer][:, :, offset:offset + length] = v
            k, v = cache.keys[layer][:, :, :offset + length], cache.values[layer][:, :, :offset + length]
        # A single new query may see the whole past; a block of queries needs the causal mask,
        # shifted by the cached length (is_causal alone would align it to the top-left corner).
        mask = None
        if length > 1 and offset > 0:
            mask = torch.ones(length, offset + length, dtype=torch.bool, device=x.device).tril(diagonal=offset)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=length > 1 and offset == 0,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(batch, length, dim))


class CrossAttention(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.q = nn.Linear(config.dim, config.dim, bias=False)
        self.kv = nn.Linear(config.dim, 2 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)
        self.dropout = config.dropout

    def text_kv(self, memory: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[B, H, L, head_dim]`` of the projected text states ``[B, L, dim]``."""
        batch, length, dim = memory.shape
        k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in self.kv(memory).split(dim, dim=2))
        return k, v

    def forward(self, x: torch.Tensor, text_kv: Tuple[torch.Tensor, torch.Tensor], text_mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q = self.q(x).view(batch, length, self.num_heads, -1).transpose(1, 2)
        k, v = text_kv
        # [B, 1, 1, L]: padded text positions take no part in any query's attention.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=text_mask[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the text, feed-forward."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(config.dim)
        self.self_attn = SelfAttention(config)
        self.norm_cross = nn.LayerNorm(config.dim)
        self.cross_attn = CrossAttention(config)
        self.norm_ffn = nn.LayerNorm(config.dim)
        self.ffn = nn.Sequential(
            nn.Linear(config.dim, config.ffn_dim, bias=False), nn.GELU(),
            nn.Linear(config.ffn_dim, config.dim, bias=False), nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, text_kv: Tuple[torch.Tensor, torch.Tensor], text_mask: torch.Tensor,
                cache: Optional[KVCache], layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.norm_self(x), cache, layer)
        x = x + self.cross_attn(self.norm_cross(x), text_kv, text_mask)
        return x + self.ffn(self.norm_ffn(x))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """``[length, dim]`` transformer sine/cosine position table."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class AudioLanguageModel(nn.Module, Pretrained):
    """Text-conditioned autoregressive model over codec tokens laid out by a codebook pattern."""

    config_class = LMConfig
    training_fields = ("dropout", "cfg_dropout")

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.pattern = CodebookPattern(config.pattern, config.num_codebooks)
        self.embeddings = nn.ModuleList(nn.Embedding(config.codebook_size + 1, config.dim) for _ in range(config.num_codebooks))
        if config.positional == "learned":
            self.positions = nn.Parameter(0.02 * torch.randn(config.max_seq_len, config.dim))
        else:
            self.register_buffer("positions", sinusoidal_positions(config.max_seq_len, config.dim), persistent=False)
        self.text_proj = nn.Linear(config.text_dim, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.heads = nn.ModuleList(nn.Linear(config.dim, config.codebook_size, bias=False) for _ in range(config.num_codebooks))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, condition: TextCondition, cache: Optional[KVCache] = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits ``[B, K, T, codebook_size]`` for the step after each input step of ``tokens [B, K, T]``.

        With ``cache`` the tokens continue the cached positions and are appended to the cache.
        ``last_only`` computes the heads for the last position only (prefill during generation).
        """
        batch, num_codebooks, length = tokens.shape
        offset = cache.length if cache is not None else 0
        capacity = cache.capacity if cache is not None else self.config.max_seq_len
        if num_codebooks != self.config.num_codebooks:
            raise ValueError(f"expected {self.config.num_codebooks} codebooks, got {num_codebooks}")
        if offset + length > capacity:
            raise ValueError(f"sequence of {offset + length} steps exceeds the {capacity} steps available")
        x = sum(embedding(tokens[:, k]) for k, embedding in enumerate(self.embeddings))
        x = self.dropout(x + self.positions[offset:offset + length])
        text_kv = cache.text_kv if cache is not None and cache.text_kv else self.text_kv(condition)
        for index, block in enumerate(self.blocks):
            x = block(x, text_kv[index], condition.mask, cache, index)
        if cache is not None:
            cache.text_kv = text_kv
            cache.length += length
        x = self.norm(x[:, -1:] if last_only else x)
        return torch.stack([head(x) for head in self.heads], dim=1)

    def text_kv(self, condition: TextCondition) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys and values of ``condition`` for every block."""
        memory = self.text_proj(condition.states)
        return [block.cross_attn.text_kv(memory) for block in self.blocks]

    def new_cache(self, batch: int, length: Optional[int] = None) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``length`` (default ``max_seq_len``) steps."""
        config = self.config
        length = min(length or config.max_seq_len, config.max_seq_len)
        shape = (batch, config.num_heads, length, config.dim // config.num_heads)
        dtype = self.text_proj.weight.dtype
        return KVCache(
            keys=[torch.zeros(shape, device=self.device, dtype=dtype) for _ in self.blocks],
            values=[torch.zeros(shape, device=self.device, dtype=dtype) for _ in self.blocks],
        )

    def _sequence_inputs(self, seq: torch.Tensor) -> torch.Tensor:
        """Model input for a pattern sequence: a start step of special tokens, then ``seq`` minus its last step."""
        start = seq.new_full((*seq.shape[:2], 1), self.config.special_token)
        return torch.cat([start, seq[:, :, :-1]], dim=2)

    def loss(self, codes: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor) -> LMLoss:
        """Mean cross-entropy per codebook over valid pattern positions of ``codes [B, K, F]``.

        In training mode each item's text is replaced by the null condition with probability
        ``cfg_dropout``, which is what makes classifier-free guidance possible at inference.
        """
        seq, valid = self.pattern.build(codes, self.config.special_token)
        if self.training and self.config.cfg_dropout > 0:
            dropped = torch.rand(codes.shape[0], device=codes.device) < self.config.cfg_dropout
            text_states = text_states.masked_fill(dropped[:, None, None], 0.0)
            first_only = torch.zeros_like(text_mask)
            first_only[:, 0] = True
            text_mask = torch.where(dropped[:, None], first_only, text_mask)
        logits = self(self._sequence_inputs(seq), TextCondition(text_states, text_mask))
        targets = seq.masked_fill(~valid, -100)
        per_position = F.cross_entropy(logits.permute(0, 3, 1, 2).float(), targets, ignore_index=-100, reduction="none")
        per_codebook = per_position.sum(dim=(0, 2)) / (valid.sum(dim=1) * codes.shape[0])
        return LMLoss(total=per_codebook.mean(), per_codebook=per_codebook)

    def _prompt_layout(self, num_frames: int, prompt_frames: int) -> Tuple[torch.Tensor, int]:
        """(``[K, S]`` mask of the slots the prompt fills, number of leading steps it fully determines)."""
        known_frames = torch.zeros(1, self.config.num_codebooks, num_frames, dtype=torch.long, device=self.device)
        known_frames[..., :prompt_frames] = 1
        known = self.pattern.build(known_frames, 0)[0][0].bool()
        # Steps whose every slot is prompt or empty need no sampling: they are fed all at once.
        determined = known | ~self.pattern.valid_mask(num_frames, self.device)
        return known, int(determined.all(dim=0).long().cumprod(0).sum())

    def steps_to_sample(self, num_frames: int, prompt_frames: int = 0) -> int:
        """How many sampling steps :meth:`generate` takes for ``num_frames`` frames after a prompt."""
        return self.pattern.sequence_length(num_frames) - self._prompt_layout(num_frames, prompt_frames)[1]

    @torch.no_grad()
    def generate(
        self,
        condition: TextCondition,
        num_frames: int,
        prompt: Optional[torch.Tensor] = None,
        sampling: SamplingParams = SamplingParams(),
        cfg_coef: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        on_step: Optional[Callable[[], None]] = None,
    ) -> torch.Tensor:
        """Sample ``num_frames`` frames of codes ``[B, K, F]`` that start with ``prompt [B, K, P]``.

        ``cfg_coef=None`` samples from the conditional model; a number runs the conditional and
        null-condition passes as one doubled batch and guides with it. The prompt's pattern
        steps are prefilled in one forward pass and its tokens are kept unchanged. ``on_step``
        is called once per sampled step.
        """
        config, batch = self.config, len(condition)
        special = config.special_token
        if self.pattern.sequence_length(num_frames) > config.max_seq_len:
            raise ValueError(f"{num_frames} frames do not fit in max_seq_len {config.max_seq_len}; slide a window")
        prompt_frames = 0 if prompt is None else prompt.shape[-1]
        if prompt is not None and (prompt.shape[:2] != (batch, config.num_codebooks) or prompt_frames > num_frames):
            raise ValueError(f"prompt of shape {tuple(prompt.shape)} does not fit a batch of {batch} x {num_frames} frames")

        codes = torch.zeros(batch, config.num_codebooks, num_frames, dtype=torch.long, device=self.device)
        if prompt is not None:
            codes[..., :prompt_frames] = prompt
        seq, valid = self.pattern.build(codes, special)
        known, prefix = self._prompt_layout(num_frames, prompt_frames)
        num_steps = seq.shape[-1]

        if cfg_coef is not None:
            condition = TextCondition.cat([condition, TextCondition.null(batch, config.text_dim, self.device)])
        repeat = 2 if cfg_coef is not None else 1
        cache = self.new_cache(batch * repeat, num_steps)
        inputs = self._sequence_inputs(seq)
        logits = self(inputs[:, :, :prefix + 1].repeat(repeat, 1, 1), condition, cache, last_only=True)
        for step in range(prefix, num_steps):
            step_logits = logits[:, :, -1]
            if cfg_coef is not None:
                cond_logits, uncond_logits = step_logits.chunk(2)
                step_logits = classifier_free_guidance(cond_logits, uncond_logits, cfg_coef)
            sampled = sample_tokens(step_logits, sampling, generator)
            sampled = torch.where(valid[:, step], sampled, special)
            seq[:, :, step] = torch.where(known[:, step], seq[:, :, step], sampled)
            if on_step is not None:
                on_step()
            if step + 1 < num_steps:
                logits = self(seq[:, :, step:step + 1].repeat(repeat, 1, 1), condition, cache)
        return self.pattern.revert(seq, num_frames)
