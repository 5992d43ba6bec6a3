"""Encode a corpus into codec token shards for language-model training.

    python -m recipes.extract_tokens --codec runs/codec/best --manifest data/corpus/manifest.jsonl \\
        --out data/tokens [--max-seconds 10] [--mix-copies 1] [--devices 2 --strategy ddp]

A Lightning predict loop, so the same command runs on one CPU or on many GPUs. Each rank writes
``shard-r<rank>-<n>.safetensors`` files (codes as int16 ``[K, F]`` per item) and
``index-r<rank>.jsonl`` lines ``{"shard", "key", "caption", "frames", "split"}``; ``index.jsonl``
merges them at the end. ``--mix-copies N`` adds, per split, N extra passes in which each clip is
mixed with another at a random SNR in [-5, 5] dB, keeping its own length, and the captions are
joined (AudioGen's mixing augmentation). Clips are encoded shortest first, so a batch is padded
only to the longest of similar clips. ``codec.json`` records the codec's fingerprint: the LM recipe
refuses a ``data.codec`` that did not make these tokens. ``vocabulary.json`` records the captions
(recordings each) and target classes of the train clips, which the LM recipe exports beside the LM.
A manifest whose train split holds an evaluation-only or reserved source is refused in one line
(:func:`recipes.data.refuse_untrainable`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from safetensors.torch import load_file, save_file
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from codec import Codec
from generation.audiogen import CODEC_REFERENCE, write_codec_reference
from generation.vocabulary import VOCABULARY_FILE, write_vocabulary
from vocoder.checkpoint import CheckpointError

from .coverage import vocabulary_from_entries
from .data import AudioSegmentDataset, ManifestError, MixingDataset

INDEX_NAME = "index.jsonl"


class TaggedDataset(Dataset):
    """Adds the split name to every item of a dataset."""

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return {**self.dataset[index], "split": self.split}


class CodecTokenizer(L.LightningModule):
    """Wraps a frozen codec for ``Trainer.predict``: audio batch -> per-item codes trimmed to length."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec.eval().requires_grad_(False)

    def predict_step(self, batch: Dict[str, Any], batch_idx: int) -> List[Dict[str, Any]]:
        longest = int(batch["num_samples"].max())  # items are padded to the segment length: encode only up to the longest
        codes = self.codec.encode(batch["audio"][..., :longest], self.codec.sample_rate, progress=False).cpu()
        items = []
        for i, valid in enumerate(batch["num_samples"].tolist()):
            frames = math.ceil(valid / self.codec.hop_length)
            items.append({"codes": codes[i, :, :frames].to(torch.int16), "caption": batch["caption"][i],
                          "split": batch["split"][i]})
        return items


class ShardWriter(BasePredictionWriter):
    """Buffers predicted items and writes a safetensors shard every ``shard_size`` items, per rank."""

    def __init__(self, out: Path, shard_size: int = 1000) -> None:
        super().__init__(write_interval="batch")
        self.out, self.shard_size = out, shard_size
        self.buffer: List[Dict[str, Any]] = []
        self.shards = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.buffer.extend(prediction)
        if len(self.buffer) >= self.shard_size:
            self.flush(trainer.global_rank)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.flush(trainer.global_rank)
        trainer.strategy.barrier("token-shards")  # every rank's index is complete before merging
        if trainer.is_global_zero:
            print(f"wrote {merge_indexes(self.out)} token items to {self.out}")

    def flush(self, rank: int) -> None:
        if not self.buffer:
            return
        name = f"shard-r{rank}-{self.shards:05d}.safetensors"
        save_file({f"item{i}": item["codes"].contiguous() for i, item in enumerate(self.buffer)}, str(self.out / name))
        with open(self.out / f"index-r{rank}.jsonl", "a") as index:
            for i, item in enumerate(self.buffer):
                row = {"shard": name, "key": f"item{i}", "caption": item["caption"],
                       "frames": int(item["codes"].shape[-1]), "split": item["split"]}
                index.write(json.dumps(row) + "\n")
        self.buffer, self.shards = [], self.shards + 1


def merge_indexes(out: Path) -> int:
    """Concatenate the per-rank index files into ``index.jsonl``; returns the number of items."""
    rows = []
    for part in sorted(out.glob("index-r*.jsonl")):
        rows.extend(line for line in part.read_text().splitlines() if line.strip())
    (out / INDEX_NAME).write_text("".join(row + "\n" for row in rows))
    return len(rows)


def read_token_index(directory: Path, split: Optional[str] = None) -> List[Dict[str, Any]]:
    """Rows of ``index.jsonl`` (optionally one split), validated."""
    path = Path(directory) / INDEX_NAME
    if not path.is_file():
        raise ManifestError(f"{path} not found: run python -m recipes.extract_tokens first")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and {"shard", "key", "caption", "frames", "split"} <= set(row)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            raise ManifestError(f"{path}:{number}: malformed token index line")
        if split is None or row["split"] == split:
            rows.append(row)
    return rows


def load_token_items(directory: Path, rows: List[Dict[str, Any]]) -> List[torch.Tensor]:
    """The ``[K, F]`` code tensors of ``rows``, reading each shard once."""
    shards: Dict[str, Dict[str, torch.Tensor]] = {}
    items = []
    for row in rows:
        if row["shard"] not in shards:
            shards[row["shard"]] = load_file(str(Path(directory) / row["shard"]))
        items.append(shards[row["shard"]][row["key"]].long())
    return items


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.extract_tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", type=Path, required=True, help="trained codec directory (save_pretrained)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "valid"])
    parser.add_argument("--max-seconds", type=float, default=10.0, help="tokens of at most this much of each clip")
    parser.add_argument("--mix-copies", type=int, default=0, help="extra mixed passes over each split")
    parser.add_argument("--limit", type=int, help="at most this many clips per split (a seeded random subset)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--strategy", default="auto")
    args = parser.parse_args(argv)
    try:
        codec = Codec.from_pretrained(args.codec)
        parts, encoded = [], []
        for split in args.splits:
            segments = AudioSegmentDataset(args.manifest, split, args.max_seconds, codec.sample_rate, crop="start")
            indices = list(range(len(segments)))
            if args.limit is not None and args.limit < len(segments):
                indices = torch.randperm(len(segments), generator=torch.Generator().manual_seed(0))[: args.limit].tolist()
            # Shortest first: a batch is padded to its longest clip, so similar lengths waste little work.
            clips = Subset(segments, sorted(indices, key=lambda i: segments.entries[i].duration))
            encoded.extend(segments.entries[i] for i in indices)
            parts.append(TaggedDataset(clips, split))
            parts.extend(TaggedDataset(MixingDataset(clips, probability=1.0, keep_length=True), split) for _ in range(args.mix_copies))
    except (CheckpointError, ManifestError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in list(args.out.glob("shard-r*.safetensors")) + list(args.out.glob("index*.jsonl")):
        stale.unlink()
    # Which codec made these tokens: the LM recipe refuses to pair them with another.
    write_codec_reference(args.out / CODEC_REFERENCE, codec)
    # What an LM trained on these tokens will know, from the manifest's own recordings.
    write_vocabulary(args.out / VOCABULARY_FILE, vocabulary_from_entries(encoded))
    loader = DataLoader(ConcatDataset(parts), batch_size=args.batch_size, num_workers=args.num_workers)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    trainer = L.Trainer(accelerator=args.accelerator, devices=devices, strategy=args.strategy, logger=False,
                        callbacks=[ShardWriter(args.out)], enable_model_summary=False)
    trainer.predict(CodecTokenizer(codec), loader, return_predictions=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
