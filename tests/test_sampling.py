"""Training batches from Lhotse's samplers: length buckets, sharding by rank, and exact mid-epoch resume
(a run stopped after a checkpoint, by max_steps or as a kill leaves it, and resumed sees every example of
the epoch once, in the order an uninterrupted run sees them), on Shar shards written by
``recipes.prepare_data --shar``."""

from __future__ import annotations

import copy
import pickle
import shutil
import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("lhotse")

from lhotse import CutSet, MonoCut  # noqa: E402
from lhotse.dataset.sampling import SimpleCutSampler  # noqa: E402

from recipes.sampling import equal_count_bins, ResumableBatches, bucketing_sampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
Epochs = List[Tuple[int, List[int]]]  # (epoch, dataset positions) per batch


def epochs_of(batches: ResumableBatches, passes: int = 2) -> Epochs:
    """The batches of ``passes`` passes (each pass is the sampler's next epoch; Lightning's set_epoch,
    called with its own count, changes nothing)."""
    out = []
    for _ in range(passes):
        batches.set_epoch(7)
        out += [(batches.epoch, batch.indices) for batch in batches]
    return out


def stopped_and_resumed(make, stop: int, fetched_ahead: int = 2) -> Epochs:
    """Train ``stop`` batches of epoch 0 while the loader fetched ``fetched_ahead`` more (Lightning's
    prefetch, workers), save the state through pickle, restore it into a new sampler, finish."""
    first = make()
    fetched = [batch for _, batch in zip(range(stop + fetched_ahead), iter(first))]
    for batch in fetched[:stop]:
        first.trained(batch.serial)
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    # The resumed run's first pass finishes epoch 0 (or starts epoch 1 when epoch 0 was trained to its end).
    return [(0, b.indices) for b in fetched[:stop]] + epochs_of(resumed, 2 if stop < epoch_length(make) else 1)


def epoch_length(make) -> int:
    return len(list(make()))


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("buckets, drop_last", [(1, True), (4, False)])  # the crops' sampler; the LM's
def test_resumed_batches_continue_exactly_on_every_rank(world_size, buckets, drop_last):
    lengths = [1.0 + (i * 37 % 11) for i in range(23)]

    def sampler(rank):
        return ResumableBatches(bucketing_sampler(lengths, 2, num_buckets=buckets, drop_last=drop_last, seed=5,
                                                  world_size=world_size, rank=rank), {"items": 23})

    for rank in range(world_size):
        full = epochs_of(sampler(rank))
        epoch0 = [indices for epoch, indices in full if epoch == 0]
        for stop in (0, 3, len(epoch0)):  # at the start, mid-epoch, after the epoch's last batch
            assert stopped_and_resumed(lambda: sampler(rank), stop) == full, (rank, stop)
    # Every item once per epoch over the ranks (drop_last drops at most a batch per rank).
    for epoch in (0, 1):
        seen = [i for rank in range(world_size) for e, b in epochs_of(sampler(rank)) if e == epoch for i in b]
        assert len(seen) == len(set(seen)) or not drop_last  # without drop_last Lhotse pads the last step
        assert len(set(seen)) >= 23 - (2 * world_size if drop_last else 0)


def test_a_state_from_another_layout_starts_the_epoch_over():
    def make(items):
        return ResumableBatches(bucketing_sampler([1.0] * items, 2), {"items": items})

    first = make(10)
    batch = next(iter(first))
    first.trained(batch.serial)
    other = make(12)
    with pytest.warns(UserWarning, match="another items: this epoch's data order starts over"):
        other.load_state_dict(first.state_dict())
    assert epochs_of(other, 1) == epochs_of(make(12), 1)


def test_length_buckets_hold_similar_lengths_and_every_item_once():
    lengths = torch.randint(10, 500, (203,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [b for _, b in epochs_of(ResumableBatches(bucketing_sampler(lengths, 8, num_buckets=10), {}), 1)]
    assert sorted(i for b in batches for i in b) == list(range(203))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 100  # random batches of 8 would spread over about 380 frames
    fixed = bucketing_sampler(lengths, 8, num_buckets=10, shuffle=False)
    assert [list(c.ids) for c in fixed] == [list(c.ids) for c in fixed]  # validation: the same batches on every pass


def test_length_buckets_do_not_front_load_the_long_items():
    """Many short items and a few long ones (as codec tokens of sound effects are): the first batches
    of an epoch are as long as the epoch's average, not its longest."""
    generator = torch.Generator().manual_seed(0)
    lengths = (torch.randint(10, 60, (900,), generator=generator).tolist()
               + torch.randint(300, 500, (100,), generator=generator).tolist())
    batches = [b for _, b in epochs_of(ResumableBatches(bucketing_sampler(lengths, 8, num_buckets=10), {}), 1)]
    crop = [min(lengths[i] for i in b) for b in batches]
    assert sum(crop[:20]) / 20 < 2 * sum(crop) / len(crop)
    assert equal_count_bins([1, 1, 1, 1, 2, 3, 4, 5], 4) == [2.0, 4.0]  # a repeated shortest length: no empty bucket


def test_lhotse_simple_cut_sampler_still_restores_wrongly_under_ddp():
    """Why the crops use the bucketing sampler with one bucket: Lhotse 1.33's SimpleCutSampler skips
    ahead by one rank's cuts on restore. Should this fail, Lhotse fixed it and recipes.sampling may
    use SimpleCutSampler for the fixed-length crops."""
    cuts = CutSet.from_cuts(MonoCut(id=str(i), start=0, duration=1.0, channel=0) for i in range(20))

    def make(rank):
        return SimpleCutSampler(cuts, max_cuts=2, shuffle=True, drop_last=True, world_size=2, rank=rank)

    first = make(0)
    iterator = iter(first)
    for _ in range(3):
        next(iterator)
    resumed = make(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert [list(b.ids) for b in resumed] != [list(b.ids) for b in make(0)][3:]


# -- a recipe stopped mid-epoch and resumed, on Shar shards from prepare_data --------------------------

RATE = 16_000
CLIPS = 10  # 5 batches of 2 an epoch


@pytest.fixture(scope="module")
def shar_corpus(tmp_path_factory) -> Path:
    """A folder of captioned tones through ``prepare_data --audio-dir ... --shar``."""
    from recipes.data import read_manifest
    from recipes.prepare_data import main as prepare_data

    root = tmp_path_factory.mktemp("prepared")
    sounds = root / "sounds"
    sounds.mkdir()
    t = np.arange(int(0.6 * RATE)) / RATE
    for i in range(CLIPS):
        sf.write(str(sounds / f"tone{i}.wav"), (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t)).astype(np.float32), RATE)
        (sounds / f"tone{i}.txt").write_text(f"a tone number {i}\n")
    shar = root / "shar"
    assert prepare_data(["--packages", "none", "--audio-dir", str(sounds), "--out", str(root / "corpus"),
                         "--valid-fraction", "0", "--test-fraction", "0", "--min-seconds", "0.1",
                         "--shar", str(shar), "--shard-size", "4"]) == 0
    assert len(list(shar.glob("cuts.*.jsonl.gz"))) == len(list(shar.glob("recording.*.tar"))) == 3
    from recipes.data import AudioSegmentDataset
    from_shar = AudioSegmentDataset(shar, "train", 0.5, RATE, crop="start")
    assert sorted(e.caption for e in from_shar.entries) == \
        sorted(e.caption for e in read_manifest(root / "corpus" / "manifest.jsonl")) and len(from_shar) == CLIPS
    return shar


def test_prepare_data_refuses_a_used_shar_folder_before_any_work(tmp_path, capsys):
    from recipes.prepare_data import main as prepare_data

    (tmp_path / "shar").mkdir()
    (tmp_path / "shar" / "x").write_text("")
    with pytest.raises(SystemExit):
        prepare_data(["--packages", "none", "--audio-dir", str(tmp_path), "--out", str(tmp_path / "c"),
                      "--shar", str(tmp_path / "shar")])
    assert "not an empty folder" in capsys.readouterr().err and not (tmp_path / "c").exists()


def train_recording(output: Path, shar: Path, *args: str) -> List[Tuple[int, List[str]]]:
    """``python -m recipes.train codec --smoke`` in this process on ``shar``; the (epoch, example ids)
    of every training step, recorded by a callback added to the recipe's Trainer."""
    import lightning as L

    import recipes.train as train

    seen: List[Tuple[int, List[str]]] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            data = trainer.datamodule  # the sampler's epoch: Lightning's own count differs after a resume
            entries, epoch = data.clips.entries, data._train_loader.batches.epoch
            seen.append((epoch, [entries[i].path for i in batch["index"].tolist()]))

    build = train.build_trainer

    def recording(*a, **k):
        trainer = build(*a, **k)
        trainer.callbacks.append(Record())
        return trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "build_trainer", recording)
        # Cheap steps: no discriminators, no validation after the sanity check; a checkpoint every step.
        status = train.main(["codec", "--smoke", "--config", str(ROOT / "recipes/configs/codec_waveform.yaml"),
                             "--output", str(output), *args, "--set", f"data.manifest={shar}",
                             "data.valid_split=null", "optim.adversarial_start_step=1000",
                             "trainer.val_check_interval=1000", "trainer.checkpoint_every_n_steps=1"])
    assert status == 0
    return seen


def test_a_run_resumed_mid_epoch_sees_every_example_once(shar_corpus, tmp_path):
    steps = 8  # all 5 batches of epoch 0 and 3 of epoch 1
    whole = train_recording(tmp_path / "whole", shar_corpus, "--max-steps", str(steps))
    first = train_recording(tmp_path / "run", shar_corpus, "--max-steps", "3")  # stops mid-epoch 0
    # As a run killed right after its step-3 checkpoint leaves it: the periodic save, not the one at the end.
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copyfile(checkpoints / "step3.ckpt", checkpoints / "last.ckpt")
    second = train_recording(tmp_path / "run", shar_corpus, "--resume", "--max-steps", "6")  # into epoch 1
    rest = train_recording(tmp_path / "run", shar_corpus, "--resume", "--max-steps", str(steps))
    assert len(whole) == steps and (len(first), len(second), len(rest)) == (3, 3, 2)
    assert first + second + rest == whole  # nothing repeated, nothing skipped, the same order
    for epoch in (0, 1):
        ids = [i for e, batch in whole if e == epoch for i in batch]
        assert len(ids) == len(set(ids))
    assert [e for e, _ in whole] == [0] * 5 + [1] * 3
    assert len({i for e, b in whole if e == 0 for i in b}) == CLIPS
