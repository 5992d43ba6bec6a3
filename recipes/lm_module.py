"""Language-model recipe: the text-conditioned transformer over codec token shards.

Config sections: ``model`` (:class:`~generation.transformer.LMConfig` fields), ``data`` (``tokens``:
the output of :mod:`recipes.extract_tokens`; ``codec``: the codec those tokens came from, exported
beside the LM so the result loads with ``AudioGen.from_pretrained``), ``optim`` (AdamW with warm-up
then inverse-square-root decay, as in audiocraft), ``trainer``. Validation reports cross-entropy and
perplexity per codebook.
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from codec import Codec
from generation.audiogen import CODEC_REFERENCE, check_codec_reference, write_codec_reference
from generation.conditioners import CachedConditioner, TextConditioner, build_conditioner
from generation.transformer import AudioLanguageModel, LMConfig
from generation.vocabulary import VOCABULARY_FILE, write_vocabulary
from vocoder.checkpoint import config_from_dict

from .config import RecipeConfigError
from .coverage import token_vocabulary
from .extract_tokens import load_token_items, read_token_index
from .sampling import (BatchDataset, FixedBatches, ResumableBatches, ResumableDataModule, ResumableLoader,
                       bucketing_sampler)


class TokenDataset(Dataset):
    """Code sequences ``[K, F]`` and captions of one split of a token directory."""

    def __init__(self, directory: str, split: str, min_frames: int = 1, permute_seed: Optional[int] = None) -> None:
        rows = [row for row in read_token_index(Path(directory), split) if row["frames"] >= min_frames]
        if not rows:
            raise RecipeConfigError(f"{directory} has no {split!r} items of at least {min_frames} frames")
        if permute_seed is not None:  # a fixed order unrelated to how the items were written
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(permute_seed))
            rows = [rows[i] for i in order.tolist()]
        self.codes = load_token_items(Path(directory), rows)
        self.captions = [row["caption"] for row in rows]
        self.lengths = [codes.shape[-1] for codes in self.codes]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {"codes": self.codes[index], "caption": self.captions[index]}


class CropCollate:
    """Batches items by cropping all to the shortest one (at most ``max_frames``), at random offsets
    in training, so no padding has to be masked out of the loss."""

    def __init__(self, max_frames: int, random_offsets: bool) -> None:
        self.max_frames, self.random_offsets = max_frames, random_offsets

    def __call__(self, items: List[Dict[str, Any]]) -> Dict[str, Any]:
        frames = min(self.max_frames, min(item["codes"].shape[-1] for item in items))
        crops = []
        for item in items:
            slack = item["codes"].shape[-1] - frames
            start = int(torch.randint(0, slack + 1, ()).item()) if self.random_offsets and slack else 0
            crops.append(item["codes"][:, start : start + frames])
        return {"codes": torch.stack(crops), "caption": [item["caption"] for item in items]}


class TokenDataModule(ResumableDataModule):
    """Token items of a token directory in batches of similar length, drawn by Lhotse's
    DynamicBucketingSampler (``num_buckets`` buckets; :mod:`recipes.sampling`): training batches are
    shuffled per epoch, sharded by rank and resume mid-epoch exactly; validation batches are the
    same on every pass."""

    def __init__(self, tokens: str, max_frames: int, min_frames: int = 10, batch_size: int = 16,
                 num_workers: int = 0, num_buckets: int = 30, seed: int = 0, **_: Any) -> None:
        super().__init__()
        self.tokens, self.max_frames, self.min_frames = tokens, max_frames, min_frames
        self.batch_size, self.num_workers, self.num_buckets, self.seed = batch_size, num_workers, num_buckets, seed

    def setup(self, stage: Optional[str] = None) -> None:
        self.train_set = TokenDataset(self.tokens, "train", self.min_frames)
        self.valid_set = TokenDataset(self.tokens, "valid", self.min_frames, permute_seed=0)

    def _sampler(self, dataset: TokenDataset, shuffle: bool):
        world_size, rank = self.process_group()
        return bucketing_sampler(dataset.lengths, self.batch_size, num_buckets=self.num_buckets, shuffle=shuffle,
                                 seed=self.seed, world_size=world_size, rank=rank)

    def train_dataloader(self) -> ResumableLoader:
        world_size, _ = self.process_group()
        layout = {"items": len(self.train_set), "batch_size": self.batch_size, "world_size": world_size,
                  "seed": self.seed, "num_buckets": self.num_buckets}
        batches = ResumableBatches(self._sampler(self.train_set, shuffle=True), layout)
        self._train_loader = ResumableLoader(self.train_set, batches, CropCollate(self.max_frames, True),
                                             self.num_workers)
        return self._train_loader

    def val_dataloader(self) -> DataLoader:
        return DataLoader(BatchDataset(self.valid_set, CropCollate(self.max_frames, False)),
                          sampler=FixedBatches(self._sampler(self.valid_set, shuffle=False)), batch_size=None,
                          num_workers=self.num_workers)


@functools.lru_cache(maxsize=1)
def _load_codec(directory: str) -> Codec:
    """Loaded once per process: the token check and every export of a run use the same codec."""
    return Codec.from_pretrained(directory)


def check_token_codec(tokens: Union[str, Path], codec: Optional[str]) -> None:
    """Refuse ``data.codec`` when the tokens record (``codec.json``, written by ``extract_tokens``)
    that another codec made them: the exported LM would otherwise name a codec its tokens do not fit."""
    reference = Path(tokens) / CODEC_REFERENCE
    if codec and reference.is_file():
        check_codec_reference(reference, _load_codec(str(codec)),
                              f"data.codec ({codec}) is not the codec that made these tokens; point data.codec "
                              f"at that codec, or extract tokens with this one")


def learning_rate_factor(step: int, warmup: int, cooldown_start: Optional[int] = None,
                         cooldown_steps: int = 1000) -> float:
    """Multiplier of ``optim.lr`` after ``step`` optimizer steps: linear warm-up over ``warmup``
    steps, then inverse square root; from ``cooldown_start`` on, that value falls linearly to zero
    over ``cooldown_steps`` (the warmup-stable-decay ending, which lowers the loss that a decaying
    but never-small rate leaves on the table)."""
    step += 1
    factor = step / warmup if step < warmup else math.sqrt(warmup / step)
    if cooldown_start is not None and step > cooldown_start:
        factor *= max(0.0, 1.0 - (step - cooldown_start) / cooldown_steps)
    return factor


class LanguageModelModule(L.LightningModule):
    """Lightning module training an :class:`~generation.transformer.AudioLanguageModel`."""

    monitor = "val/cross_entropy"
    monitor_mode = "min"
    has_unused_parameters = False

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters(config)
        self.config = config
        self.lm_config = config_from_dict(LMConfig, config["model"], "model")
        self.lm = AudioLanguageModel(self.lm_config)
        self.optim = config["optim"]  # checked and completed by recipes.config.LMOptimConfig
        # The frozen text encoder is neither trained nor checkpointed: kept out of the module tree.
        self._conditioner: List[TextConditioner] = [CachedConditioner(build_conditioner(self.lm_config.conditioner)).eval()]

    @property
    def training_fields(self) -> Tuple[str, ...]:
        """Config fields a resumed run may change (see ``Pretrained.training_fields``)."""
        return type(self.lm).training_fields

    @property
    def conditioner(self) -> TextConditioner:
        return self._conditioner[0]

    def datamodule(self) -> TokenDataModule:
        data = dict(self.config["data"])
        check_token_codec(data["tokens"], data["codec"])
        data["max_frames"] = data["max_frames"] or self._max_frames()
        return TokenDataModule(**data, seed=self.config["seed"])

    def _max_frames(self) -> int:
        # Every training sequence, laid out by the model's own pattern, must fit in the context.
        return self.lm.pattern.max_frames(self.lm_config.max_seq_len)

    def warm_start(self, directory: Path) -> None:
        """Start from the weights of a saved model (``init: DIR``); its config must match."""
        self.lm.load_weights_from(directory)

    def on_fit_start(self) -> None:
        self.conditioner.to(self.device)

    def _loss(self, batch: Dict[str, Any]):
        condition = self.conditioner(batch["caption"])
        return self.lm.loss(batch["codes"], condition.states.to(self.device), condition.mask.to(self.device))

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/cross_entropy", loss.total, prog_bar=True)
        return loss.total

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        loss = self._loss(batch)
        size = batch["codes"].shape[0]
        self.log("val/cross_entropy", loss.total, prog_bar=True, sync_dist=True, batch_size=size)
        self.log("val/perplexity", torch.exp(loss.total), sync_dist=True, batch_size=size)
        for k, value in enumerate(loss.per_codebook):
            self.log(f"val/cross_entropy_k{k}", value, sync_dist=True, batch_size=size)
            self.log(f"val/perplexity_k{k}", torch.exp(value), sync_dist=True, batch_size=size)

    def configure_optimizers(self):
        lr, warmup = self.optim["lr"], self.optim["warmup_steps"]
        decay, no_decay = [], []
        for name, param in self.lm.named_parameters():
            (decay if param.dim() >= 2 and "embed" not in name else no_decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.optim["weight_decay"]},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=tuple(self.optim["betas"]))

        schedule = functools.partial(learning_rate_factor, warmup=warmup,
                                     cooldown_start=self.optim["cooldown_start"],
                                     cooldown_steps=self.optim["cooldown_steps"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    def export(self, directory: Path, half: bool = False) -> None:
        """Save ``lm/`` and its codec: a directory ``AudioGen.from_pretrained`` loads. The shipped codec
        is referred to by its fingerprint (``codec.json``) rather than copied; any other is copied as ``codec/``.
        ``vocabulary.json`` says what it trained on (the token folder's, see :func:`recipes.coverage.token_vocabulary`)."""
        directory = Path(directory)
        self.lm.save_pretrained(directory / "lm", half=half)
        write_vocabulary(directory / VOCABULARY_FILE, token_vocabulary(Path(self.config["data"]["tokens"])))
        codec = self.config["data"]["codec"]
        if codec and Path(codec).resolve() == Codec.default_pretrained.resolve():
            write_codec_reference(directory / CODEC_REFERENCE, _load_codec(str(codec)))
        elif codec:
            shutil.copytree(codec, directory / "codec", dirs_exist_ok=True)
