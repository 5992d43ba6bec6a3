"""Training batches drawn by Lhotse's samplers, resumable mid-epoch.

Every recipe trains on a map-style dataset: fixed-length crops of a corpus's clips
(:class:`recipes.data.AudioSegmentDataset`, whatever the corpus is: ``manifest.jsonl``, Lhotse cuts or
Shar) or codec-token items (:class:`recipes.lm_module.TokenDataset`). Lhotse's
:class:`~lhotse.dataset.sampling.DynamicBucketingSampler` draws the batches over one light cut per item
(its position and its length, never its audio), so one sampler serves every kind of corpus:

* the language model buckets by length (``data.num_buckets``, default 30, each holding about as many
  items): a batch is cropped to its shortest item, so items of similar length waste little;
* the codec and vocoder take crops of one length, where bucketing has nothing to do: they use the same
  sampler with one bucket, a seeded shuffle. Lhotse's ``SimpleCutSampler`` would be the natural choice
  there, but Lhotse 1.33 restores it wrongly under DDP (it skips ahead by the cuts of one rank, not of
  all ranks; ``tests/test_sampling.py`` shows it), while the bucketing sampler replays its batches and
  resumes exactly on any number of processes.

The sampler shards batches by rank itself (so the recipes' Trainer runs with
``use_distributed_sampler=False``), and :class:`ResumableLoader` is a ``DataLoader`` with
``state_dict()`` / ``load_state_dict()``, which Lightning 2.x saves in every checkpoint and restores on
resume (``fit_loop`` keeps the states of "stateful" training loaders). The saved state is the sampler's
``state_dict()`` as it was after the last batch that *trained*, not after the last one the loader
fetched: Lightning fetches one batch ahead, DataLoader workers several. A resumed run therefore sees
exactly the rest of the epoch: no batch again, none skipped.
"""

from __future__ import annotations

import copy
import random
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

if TYPE_CHECKING:
    from lhotse.dataset.sampling import DynamicBucketingSampler

SERIAL_KEY = "_batch_serial"  # rides in a training batch until on_before_batch_transfer takes it out
INDEX_KEY = "index"  # the dataset positions of a batch's items (a LongTensor), kept in the batch


class SampledBatch(NamedTuple):
    """What a sampler hands the loader: the dataset positions of one batch and, for training batches,
    their serial number (counted over the whole run, so a checkpoint can name the last one trained)."""

    indices: List[int]
    serial: Optional[int] = None


def _lhotse():
    """Lhotse's samplers, or an error naming the install that brings them."""
    try:
        from lhotse import MonoCut
        from lhotse.dataset.sampling import DynamicBucketingSampler
    except ImportError:  # the train extra
        raise ImportError("training draws its batches with Lhotse: pip install 'grvq-toolkit[train]'") from None
    return MonoCut, DynamicBucketingSampler


def bucketing_sampler(lengths: Sequence[float], batch_size: int, *, num_buckets: int = 1, shuffle: bool = True,
                      drop_last: bool = False, seed: int = 0, world_size: int = 1,
                      rank: int = 0) -> "DynamicBucketingSampler":
    """A :class:`~lhotse.dataset.sampling.DynamicBucketingSampler` over items of ``lengths`` (seconds,
    frames: only their order matters), ``batch_size`` items a batch, in up to ``num_buckets`` buckets of
    similar lengths (1: no bucketing), sharded to ``rank`` of ``world_size``. Its batches are CutSets
    whose cuts' ``custom["index"]`` is the item's position."""
    MonoCut, Bucketing = _lhotse()
    if not lengths:
        raise ValueError("no items to sample batches from")
    if batch_size < 1 or num_buckets < 1:
        raise ValueError(f"batch_size and num_buckets must be at least 1, got {batch_size} and {num_buckets}")
    cuts = [MonoCut(id=str(i), start=0.0, duration=float(length), channel=0, custom={"index": i})
            for i, length in enumerate(lengths)]
    # Lhotse's shuffle picks from a buffer filled in input order: start from a seeded permutation, so a
    # corpus listed source by source is not drawn source by source when it outgrows the buffer.
    random.Random(seed).shuffle(cuts)
    bins = equal_count_bins(lengths, num_buckets)
    with warnings.catch_warnings():
        # Its advice to read a large CutSet lazily: these cuts are a few numbers each, held in memory by design.
        warnings.filterwarnings("ignore", message="You are using DynamicBucketingSampler with an eagerly read")
        return Bucketing(cuts, max_cuts=batch_size, shuffle=shuffle, drop_last=drop_last,
                         num_buckets=len(bins) + 1 if bins else None, duration_bins=bins,
                         world_size=world_size, rank=rank, seed=seed)


def equal_count_bins(lengths: Sequence[float], num_buckets: int) -> List[float]:
    """Bucket boundaries holding about equally many items each (fewer buckets where lengths repeat).

    Lhotse estimates bins of equal total duration and draws buckets uniformly, so with a max_cuts batch
    an epoch would start with the few long items (mean crop 246 frames over the first 200 batches of the
    LM's tokens, against 71 with equal-count bins) and end with the many short ones."""
    ordered = sorted(float(length) for length in lengths)
    return sorted({ordered[len(ordered) * k // num_buckets] for k in range(1, num_buckets)} - {ordered[0]})


def _indices(cuts: Any) -> List[int]:
    # Lhotse pads the last batches of a DDP epoch with renamed copies of cuts: custom fields survive.
    return [int(cut.custom["index"]) for cut in cuts]


class FixedBatches(Sampler):
    """A Lhotse sampler's batches as :class:`SampledBatch` es, for evaluation (no serials, no state)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[SampledBatch]:
        for cuts in self.sampler:
            yield SampledBatch(_indices(cuts))


class ResumableBatches(Sampler):
    """A Lhotse sampler's batches as :class:`SampledBatch` es with serial numbers, remembering the
    sampler's ``state_dict()`` after each batch until the training loop says it has trained it.

    It counts its own epochs (every pass over it is the next epoch, and a restored state continues
    its epoch first) and ignores Lightning's ``set_epoch``: a run stopped by ``max_steps`` mid-epoch
    saves its last checkpoint after Lightning has counted that epoch as done, so Lightning would
    resume with the next epoch's order and the rest of the stopped epoch would never be seen.

    ``layout`` describes what the batches depend on (items, batch size, world size, seed...): a saved
    state whose layout differs is not restored (the epoch starts over, with a warning), since the
    sampler would replay another sequence of batches.
    """

    def __init__(self, sampler: Any, layout: Dict[str, Any]) -> None:
        self.sampler, self.layout = sampler, dict(layout)
        self.epoch = -1  # the epoch being drawn; the first pass is epoch 0
        self._restored = False  # a restored state: the next pass continues its epoch
        self._serial = 0
        self._pending: Dict[int, Dict[str, Any]] = {}  # serial -> sampler state after that batch
        self._trained = self._snapshot()  # the state to save: after the last batch trained

    def _snapshot(self) -> Dict[str, Any]:
        return copy.deepcopy(self.sampler.state_dict())

    def set_epoch(self, epoch: int) -> None:
        """Lightning's epoch number, ignored: this sampler counts its own (see the class docstring)."""

    def _start_epoch(self) -> None:
        self.epoch += 1
        self.sampler.set_epoch(self.epoch)

    def _draw(self) -> Iterator[SampledBatch]:
        for cuts in self.sampler:
            self._serial += 1
            self._pending[self._serial] = self._snapshot()
            yield SampledBatch(_indices(cuts), self._serial)

    def __iter__(self) -> Iterator[SampledBatch]:
        continuing, self._restored = self._restored, False
        if not continuing:
            self._start_epoch()
        drawn = 0
        for batch in self._draw():
            drawn += 1
            yield batch
        if continuing and not drawn:  # the state was saved after its epoch's last batch: on with the next
            self._start_epoch()
            yield from self._draw()

    def trained(self, serial: int) -> None:
        """Batch ``serial`` went through a training step: a checkpoint from now on resumes after it."""
        state = self._pending.pop(serial, None)
        if state is None:
            return  # not one of this sampler's batches (or already noted)
        self._trained = state
        for older in [s for s in self._pending if s < serial]:  # fetched before it, so never to be trained
            del self._pending[older]

    def state_dict(self) -> Dict[str, Any]:
        return {"layout": dict(self.layout), "sampler": copy.deepcopy(self._trained)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved = state.get("layout")
        if saved != self.layout:
            differing = sorted(k for k in {*(saved or {}), *self.layout} if (saved or {}).get(k) != self.layout.get(k))
            warnings.warn(f"the checkpoint's training batches were drawn with another {', '.join(differing)}: "
                          f"this epoch's data order starts over instead of resuming mid-epoch")
            return
        self.sampler.load_state_dict(copy.deepcopy(state["sampler"]))  # Lhotse's loader consumes the dict
        self.epoch, self._restored = int(self.sampler.epoch), True
        self._trained, self._pending = self._snapshot(), {}


class BatchDataset(Dataset):
    """Turns a :class:`SampledBatch` into a batch of ``dataset``'s items, collated by ``collate`` (in a
    DataLoader worker when there are workers), with the items' positions under :data:`INDEX_KEY`."""

    def __init__(self, dataset: Dataset, collate: Callable[[List[Any]], Dict[str, Any]]) -> None:
        self.dataset, self.collate = dataset, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, batch: SampledBatch) -> Dict[str, Any]:
        out = dict(self.collate([self.dataset[i] for i in batch.indices]))
        out[INDEX_KEY] = torch.tensor(batch.indices, dtype=torch.long)
        if batch.serial is not None:
            out[SERIAL_KEY] = batch.serial
        return out


class ResumableLoader(DataLoader):
    """The training DataLoader of a recipe: batches from :class:`ResumableBatches`, and the
    ``state_dict()`` / ``load_state_dict()`` through which Lightning checkpoints and restores it.

    Its owner (the LightningDataModule) calls :meth:`trained` with each batch as it reaches the training
    step (``on_before_batch_transfer``), which also takes the batch's serial number out of it.
    """

    def __init__(self, dataset: Dataset, batches: ResumableBatches,
                 collate: Callable[[List[Any]], Dict[str, Any]], num_workers: int = 0) -> None:
        self.batches = batches
        super().__init__(BatchDataset(dataset, collate), sampler=batches, batch_size=None,
                         num_workers=num_workers, persistent_workers=num_workers > 0)

    def trained(self, batch: Any) -> Any:
        """Note that ``batch`` is about to train; returns it without its serial number."""
        if isinstance(batch, dict) and SERIAL_KEY in batch:
            batch = dict(batch)
            self.batches.trained(int(batch.pop(SERIAL_KEY)))
        return batch

    def state_dict(self) -> Dict[str, Any]:
        return self.batches.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.batches.load_state_dict(state)


class ResumableDataModule(L.LightningDataModule):
    """A LightningDataModule whose training loader is a :class:`ResumableLoader` (``_train_loader``, set
    by its ``train_dataloader``): each batch reaching the training step is noted as trained."""

    _train_loader: Optional[ResumableLoader] = None

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self._train_loader.trained(batch) if self._train_loader is not None else batch

    def process_group(self) -> Tuple[int, int]:
        """``(world_size, rank)`` of the run that uses these loaders (``(1, 0)`` outside a Trainer)."""
        trainer = getattr(self, "trainer", None)
        return (1, 0) if trainer is None else (int(trainer.world_size), int(trainer.global_rank))
