"""Group-residual vector quantization (GRVQ, as in HiFi-Codec) on top of ``vector-quantize-pytorch``.

Public code layout: ``[B, K, F]`` with the ``K = groups * levels`` codebooks ordered level-major,
``(g0, l0), (g1, l0), (g0, l1), (g1, l1), ...``, so the first ``groups`` codebooks are the coarse
ones and any prefix of ``n * groups`` codebooks is a valid lower-bitrate code.
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import GroupedResidualVQ
from vector_quantize_pytorch.vector_quantize_pytorch import batched_sample_vectors, noop, sample_vectors_distributed

from .config import QuantizerConfig


@dataclass
class QuantizerOutput:
    """Quantized latent ``[B, D, F]``, codes ``[B, K, F]`` and the commitment loss (scalar)."""

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor


class GroupResidualQuantizer(nn.Module):
    """``groups`` residual VQs of ``levels`` codebooks each, over equal slices of a ``dim`` latent."""

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        self.vq = GroupedResidualVQ(
            dim=dim,
            groups=config.groups,
            num_quantizers=config.levels,
            codebook_size=config.codebook_size,
            # The library's defaults differ from the codec papers and between releases (the
            # version is pinned); every setting that changes training is spelled out here.
            kmeans_init=config.kmeans_init,  # start codebooks at cluster centres of the first batch
            kmeans_iters=config.kmeans_iters,
            decay=config.ema_decay,  # EnCodec/SoundStream: EMA 0.99 (library default 0.8)
            ema_update=True,  # codebooks follow EMA of assigned vectors, not gradients
            learnable_codebook=False,
            threshold_ema_dead_code=config.dead_code_threshold,  # re-seed entries used fewer times (EMA)
            rotation_trick=False,  # plain straight-through estimator, as in the codec papers
            straight_through=False,  # (the library's Gumbel straight-through sampling: off)
            stochastic_sample_codes=False,  # nearest neighbour, never sampled codes
            use_cosine_sim=False,  # Euclidean distance, as HiFi-Codec and EnCodec
            # Decided per training step instead (see _follow_process_group): the library would decide
            # once, here, usually before the process group exists.
            sync_codebook=False,
            commitment_weight=config.commitment_weight,  # HiFi-Codec's beta = 0.25
            # One level count per training step, shared by all groups (the library draws one seed
            # for the whole GroupedResidualVQ), uniformly from 1..levels: at least one level is kept.
            quantize_dropout=config.quantize_dropout,
            quantize_dropout_cutoff_index=0,
            quantize_dropout_multiple_of=1,
        )
        # With k-means pending, the library starts from all-zero codebooks, which would map every
        # frame of an untrained model to code 0. Random entries make an untrained model behave like
        # any randomly initialised network; the first training batch still replaces them by k-means.
        for codebook in self._codebooks():
            if not bool(codebook.initted):
                with torch.no_grad():
                    codebook.embed.normal_()
                    codebook.embed_avg.copy_(codebook.embed)

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    def _codebooks(self) -> List[nn.Module]:
        return [layer._codebook for rvq in self.vq.rvqs for layer in rvq.layers]

    def _follow_process_group(self) -> None:
        """Make the codebooks' k-means initialisation, EMA statistics and dead-code replacement use
        the data of every process when training in a process group of several (DDP), and only local
        data otherwise. The statistics are then summed over processes, so ``dead_code_threshold``
        counts uses in the global batch.

        Sets what the library's ``Codebook`` sets from ``use_ddp`` at construction (version pinned).
        """
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        for codebook in self._codebooks():
            if codebook.use_ddp == synced:
                continue
            codebook.use_ddp = synced
            codebook.sample_fn = codebook.replace_sample_fn = (
                sample_vectors_distributed if synced else batched_sample_vectors)
            codebook.kmeans_all_reduce_fn = codebook.all_reduce_fn = dist.all_reduce if synced else noop

    def codebook_weights(self) -> List[torch.Tensor]:
        """Every codebook's entries ``[codebook_size, dim / groups]``, in (group, level) order."""
        return [codebook.embed.detach()[0] for codebook in self._codebooks()]

    def codebooks_by_code(self) -> List[torch.Tensor]:
        """Every codebook's entries in the order of the codes' ``K`` axis (level-major: ``[k]`` is
        level ``k // groups`` of group ``k % groups``), as :mod:`codec.entropy` indexes them."""
        books, groups, levels = self.codebook_weights(), self.config.groups, self.config.levels
        return [books[(k % groups) * levels + k // groups] for k in range(groups * levels)]

    @property
    def allowed_num_codebooks(self) -> List[int]:
        """Valid codebook counts: whole residual levels, i.e. multiples of the number of groups."""
        return list(range(self.config.groups, self.num_codebooks + 1, self.config.groups))

    def check_num_codebooks(self, num_codebooks: Optional[int]) -> int:
        """Validate a codebook count (``None`` = all); returns it as an int."""
        groups, total = self.config.groups, self.num_codebooks
        if num_codebooks is None:
            return total
        if isinstance(num_codebooks, bool) or not isinstance(num_codebooks, numbers.Integral):
            raise ValueError(f"num_codebooks must be an integer, got {num_codebooks!r}")
        num_codebooks = int(num_codebooks)
        if not 0 < num_codebooks <= total or num_codebooks % groups:
            valid = ", ".join(map(str, self.allowed_num_codebooks))
            raise ValueError(f"num_codebooks must be one of {valid} (a multiple of {groups} groups), got {num_codebooks}")
        return num_codebooks

    def _to_public(self, indices: torch.Tensor) -> torch.Tensor:
        """Library indices ``[G, B, F, L]`` -> codes ``[B, L * G, F]``, level-major."""
        groups, batch, frames, levels = indices.shape
        return indices.permute(1, 3, 0, 2).reshape(batch, levels * groups, frames)

    @contextmanager
    def _frozen_codebooks(self) -> Iterator[None]:
        """Run the library in eval mode (no dropout, no EMA update, no dead-code replacement) and
        suspend a pending k-means initialisation, which the library would otherwise run on whatever
        it sees first, even in eval mode: outside training the codebooks must never change."""
        was_training = self.vq.training
        pending = [cb for cb in self._codebooks() if not bool(cb.initted)]
        self.vq.eval()
        for cb in pending:
            cb.initted.fill_(True)
        try:
            yield
        finally:
            for cb in pending:
                cb.initted.fill_(False)
            self.vq.train(was_training)

    def forward(self, latent: torch.Tensor, num_codebooks: Optional[int] = None) -> QuantizerOutput:
        """Quantize ``latent [B, D, F]``.

        In training mode quantizer dropout (if enabled) picks the number of levels, dropped
        levels have code ``-1``, and ``num_codebooks`` must be left at ``None`` (or all). In eval
        mode the first ``num_codebooks`` codebooks are used, the codebooks stay as they are, and a
        latent that requires gradients gets them through the straight-through estimator, as in
        training (so an encoder can learn against a frozen quantizer).
        """
        count = self.check_num_codebooks(num_codebooks)
        if self.training:
            if count != self.num_codebooks:
                raise ValueError("in training mode quantizer dropout chooses the codebooks; leave num_codebooks at None")
            self._follow_process_group()
            quantized, indices, losses = self.vq(latent.transpose(1, 2))
            # Commitment losses [G, L]: summed over residual levels, averaged over groups.
            loss = losses.sum(-1).mean()
            return QuantizerOutput(quantized.transpose(1, 2), self._to_public(indices), loss)
        codes = self.encode(latent, count)
        quantized = self.decode(codes)
        if latent.requires_grad and torch.is_grad_enabled():
            # Only where gradients flow: latent + (quantized - latent) may differ from quantized in the last bit.
            quantized = latent + (quantized - latent).detach()
        return QuantizerOutput(quantized, codes, latent.new_zeros(()))

    def encode(self, latent: torch.Tensor, num_codebooks: Optional[int] = None) -> torch.Tensor:
        """Codes ``[B, K, F]`` of ``latent [B, D, F]`` (residual VQ is sequential, so the first
        levels' codes are the same whether or not the later levels are kept)."""
        count = self.check_num_codebooks(num_codebooks)
        with self._frozen_codebooks():
            _, indices, _ = self.vq(latent.transpose(1, 2))
        return self._to_public(indices)[:, :count]

    def nearest_codes(self, latent: torch.Tensor, num_codebooks: Optional[int] = None) -> torch.Tensor:
        """Codes ``[B, K, F]`` of ``latent [B, D, F]`` by a plain nearest-neighbour residual search over
        :meth:`codebook_weights`: :meth:`encode`'s codes (but where two entries tie to float rounding)
        without the library's per-call overhead, which dominates when a stream codes one frame at a time."""
        count = self.check_num_codebooks(num_codebooks)
        groups, levels = self.config.groups, self.config.levels
        books = self.codebook_weights()
        codes = torch.empty(latent.shape[0], levels * groups, latent.shape[-1], dtype=torch.long,
                            device=latent.device)
        for group, residual in enumerate(latent.transpose(1, 2).chunk(groups, dim=-1)):  # [B, F, D / groups]
            for level in range(count // groups):
                book = books[group * levels + level]
                distance = (book * book).sum(-1) - 2 * torch.matmul(residual, book.T)  # |x - e|^2 less |x|^2
                index = distance.argmin(-1)
                codes[:, level * groups + group] = index
                residual = residual - F.embedding(index, book)
        return codes[:, :count]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantized latent ``[B, D, F]`` from codes ``[B, K, F]`` (any valid ``K``).

        A plain lookup-and-sum over the per-level codebooks: the same result as the library's
        ``get_output_from_indices`` (tests check this), without its per-shape einx tracing,
        which costs about 0.2 s for every new chunk length.
        """
        if codes.dim() != 3:
            raise ValueError(f"codes must be shaped [B, K, F], got {tuple(codes.shape)}")
        count = self.check_num_codebooks(codes.shape[1])
        groups, levels = self.config.groups, self.config.levels
        books = self.codebook_weights()
        codes = codes.long()
        parts = [
            sum(F.embedding(codes[:, level * groups + group], books[group * levels + level])
                for level in range(count // groups))
            for group in range(groups)
        ]
        return torch.cat(parts, dim=-1).transpose(1, 2)
