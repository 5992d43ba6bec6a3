"""Corpus manifests and PyTorch datasets for the training recipes.

A corpus is a folder of mono audio files plus ``manifest.jsonl``: one JSON object per line with
``path`` (relative to the manifest's folder), ``duration`` (seconds), ``sample_rate``, ``source``,
``caption``, ``split`` (``train``/``valid``/``test``), ``recording_id`` (the original recording a
segment was cut from; splits never share one) and an optional ``language``.
:mod:`recipes.prepare_data` writes such corpora; any tool that writes the same lines works too.
A Lhotse CutSet (``*.jsonl.gz``) or a folder of Lhotse Shar shards serves in its place
(:func:`open_clips`, :mod:`recipes.lhotse_io`).

:class:`AudioSegmentDataset` serves fixed-length crops of one split; :class:`MixingDataset` wraps
it to mix pairs of clips at a random SNR with their captions joined (text-to-audio training).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Literal, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from vocoder.audio import AudioError, check_sample_rate, prepare_waveform

from .captions import join_captions
from .sources import never_train_reason

SPLITS = ("train", "valid", "test")
CropMode = Literal["random", "start", "center"]
PathLike = Union[str, Path]


class ManifestError(ValueError):
    """A manifest line is malformed or names a file that does not exist."""


@dataclass(frozen=True)
class ManifestEntry:
    """One audio file of a corpus (one line of ``manifest.jsonl``)."""

    path: str
    duration: float
    sample_rate: int
    source: str
    caption: str
    split: str
    recording_id: str
    language: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        row = asdict(self)
        if row["language"] is None:
            del row["language"]
        return row

    @classmethod
    def from_json(cls, row: Any, where: str = "manifest line") -> "ManifestEntry":
        """Validate a decoded JSON object; raises :class:`ManifestError` naming ``where``."""
        if not isinstance(row, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
        known = {f.name for f in fields(cls)}
        required = known - {"language"}
        missing = sorted(required - row.keys())
        if missing:
            raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
        for key in ("path", "source", "caption", "split", "recording_id"):
            if not isinstance(row[key], str):
                raise ManifestError(f"{where}: field {key!r} must be a string")
        if not row["path"]:
            raise ManifestError(f"{where}: empty path")
        if row["split"] not in SPLITS:
            raise ManifestError(f"{where}: split must be one of {SPLITS}, got {row['split']!r}")
        duration = row["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0:
            raise ManifestError(f"{where}: duration must be a positive number, got {duration!r}")
        try:
            sample_rate = check_sample_rate(row["sample_rate"])
        except AudioError as err:
            raise ManifestError(f"{where}: {err}") from None
        language = row.get("language")
        if language is not None and not isinstance(language, str):
            raise ManifestError(f"{where}: field 'language' must be a string")
        return cls(path=row["path"], duration=float(duration), sample_rate=sample_rate,
                   source=row["source"], caption=row["caption"], split=row["split"],
                   recording_id=row["recording_id"], language=language)


def write_manifest(path: PathLike, entries: Iterable[ManifestEntry]) -> int:
    """Write entries as JSON lines (UTF-8, written to a temporary file then renamed); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_manifest(path: PathLike, split: Optional[str] = None, check_files: bool = True) -> List[ManifestEntry]:
    """Read and validate a manifest, optionally keeping one split and checking that every file exists."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    if split is not None and split not in SPLITS:
        raise ManifestError(f"unknown split {split!r}; choose from {SPLITS}")
    entries = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
            entry = ManifestEntry.from_json(row, where)
            if split is not None and entry.split != split:
                continue
            if check_files and not (path.parent / entry.path).is_file():
                raise ManifestError(f"{where}: audio file not found: {path.parent / entry.path}")
            entries.append(entry)
    return entries


class ClipSource(Protocol):
    """Where a dataset's clips come from: their manifest entries and their audio."""

    def entries(self, split: Optional[str] = None) -> List[ManifestEntry]:
        """The clips of ``split`` (None: all), in a fixed order."""

    def read(self, entry: ManifestEntry, start: int, frames: int) -> Tuple[np.ndarray, int]:
        """Up to ``frames`` samples of ``entry`` from sample ``start`` (at its own rate): float32
        ``[C, T]`` with ``T >= 1``, and that rate. Raises :class:`AudioError`."""


class ManifestClips:
    """Clips listed by a ``manifest.jsonl``, read from the files beside it."""

    def __init__(self, manifest: PathLike, check_files: bool = True) -> None:
        self.manifest, self.check_files = Path(manifest), check_files

    def entries(self, split: Optional[str] = None) -> List[ManifestEntry]:
        return read_manifest(self.manifest, split, self.check_files)

    def read(self, entry: ManifestEntry, start: int, frames: int) -> Tuple[np.ndarray, int]:
        path = self.manifest.parent / entry.path
        try:
            data, file_rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"cannot read {path}: {err}") from None
        if data.shape[0] == 0:
            raise AudioError(f"{path} returned no samples at offset {start}")
        return data.T, file_rate


def is_lhotse(path: PathLike) -> bool:
    """Whether ``path`` names Lhotse cuts (a ``*.jsonl.gz`` file, or a folder of Shar shards)."""
    path = Path(path)
    return path.name.endswith(".jsonl.gz") or (path.is_dir() and any(path.glob("cuts.*.jsonl.gz")))


def open_clips(path: PathLike, check_files: bool = True) -> ClipSource:
    """The clips of a ``manifest.jsonl``, a Lhotse CutSet ``*.jsonl.gz`` or a Lhotse Shar folder."""
    if is_lhotse(path):
        from .lhotse_io import LhotseClips  # Lhotse is an optional dependency (the train extra)

        return LhotseClips.open(path)
    if Path(path).is_dir():
        raise ManifestError(f"{path} is a folder with no Lhotse Shar shards (cuts.*.jsonl.gz): point at a "
                            f"manifest.jsonl, a Lhotse cuts .jsonl.gz file or a Shar folder")
    return ManifestClips(path, check_files)


def selected(entry: ManifestEntry, include: Optional[Sequence[str]] = None, exclude: Sequence[str] = ()) -> bool:
    """Whether ``entry``'s recording id (``source/path``) starts with one of ``include`` (all when
    None) and with none of ``exclude``: a source name selects a whole source, a longer prefix a folder."""
    rid = entry.recording_id
    return (include is None or rid.startswith(tuple(include))) and not rid.startswith(tuple(exclude))


def refuse_untrainable(entries: Iterable[ManifestEntry], where: PathLike) -> None:
    """Raise :class:`ManifestError` when training ``entries`` hold a source that must never be trained on:
    an evaluation-only source (:data:`recipes.sources.EVALUATION_ONLY_SOURCES`) or a reserved package."""
    found = sorted({entry.source for entry in entries if never_train_reason(entry.source)})
    if found:
        reasons = "; ".join(f"{source} is {never_train_reason(source)}" for source in found)
        raise ManifestError(f"{where}: its train split holds recordings that must never be trained on ({reasons}): "
                            "build the training corpus without them (--packages all leaves them out)")


def mix_clips(a: torch.Tensor, b: torch.Tensor, snr_db: float, peak: float = 0.99) -> torch.Tensor:
    """Mix ``b`` into ``a`` so that the power ratio a : b is ``snr_db``; both ``[..., T]`` of one shape.

    The sum is scaled down (both parts alike, so the SNR is kept) when its peak would exceed ``peak``.
    A silent ``b`` leaves ``a`` unchanged (and a silent ``a`` gets nothing mixed in: no SNR exists).
    """
    if a.shape != b.shape:
        raise ValueError(f"clips to mix must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    power_a = a.pow(2).mean()
    power_b = b.pow(2).mean()
    if power_b <= 0:
        return a.clone()
    gain = torch.sqrt(power_a / (power_b * 10.0 ** (snr_db / 10.0)))
    mixed = a + gain * b
    top = mixed.abs().max()
    return mixed * (peak / top) if top > peak else mixed


class AudioSegmentDataset(Dataset):
    """Fixed-length mono crops of one split: items are ``{"audio": [1, T], "caption", "num_samples"}``.

    Clips shorter than the segment are zero-padded at the end; ``num_samples`` counts the real ones.
    ``crop="random"`` (the default for ``train``) draws a new offset each time from torch's RNG (which
    DataLoader seeds per worker); ``"start"`` (default elsewhere) and ``"center"`` are deterministic.
    Files at another rate than ``sample_rate`` are resampled on the fly. ``speed_factor`` (a
    callable drawing a factor per crop, e.g. :func:`recipes.augment.draw_speed`) perturbs speed.
    ``manifest`` is anything :func:`open_clips` reads.
    """

    def __init__(self, manifest: PathLike, split: Optional[str] = "train", segment_seconds: float = 1.0,
                 sample_rate: int = 16_000, crop: Optional[CropMode] = None,
                 min_duration: float = 0.0, check_files: bool = True,
                 include: Optional[Sequence[str]] = None, exclude: Sequence[str] = (),
                 speed_factor: Optional[Callable[[], float]] = None) -> None:
        if not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        if crop is not None and crop not in ("random", "start", "center"):
            raise ValueError(f"crop must be 'random', 'start' or 'center', got {crop!r}")
        self.clips = open_clips(manifest, check_files)
        self.sample_rate = check_sample_rate(sample_rate)
        self.segment_samples = int(round(segment_seconds * self.sample_rate))
        self.crop: CropMode = crop or ("random" if split == "train" else "start")
        self.speed_factor = speed_factor
        self.entries = [e for e in self.clips.entries(split)
                        if e.duration >= min_duration and selected(e, include, exclude)]
        if split == "train":
            refuse_untrainable(self.entries, manifest)
        if not self.entries:
            raise ManifestError(f"{manifest} has no {split or 'any'!r} entries of at least {min_duration} s"
                                + (" with the chosen include/exclude prefixes" if include or exclude else ""))

    def __len__(self) -> int:
        return len(self.entries)

    def _offset(self, available: int, wanted: int) -> int:
        slack = available - wanted
        if slack <= 0:
            return 0
        if self.crop == "random":
            return int(torch.randint(0, slack + 1, ()).item())
        return slack // 2 if self.crop == "center" else 0

    def load_segment(self, entry: ManifestEntry) -> Tuple[torch.Tensor, int]:
        """Read a crop of ``entry`` (only the needed frames); returns ``[1, segment]`` and the valid length."""
        # Speed perturbation reads ``factor`` times the crop and plays it back that much faster.
        factor = self.speed_factor() if self.speed_factor is not None else 1.0
        # Read in the file's own time base, then resample just the crop.
        wanted = math.ceil(self.segment_samples * factor * entry.sample_rate / self.sample_rate)
        available = int(round(entry.duration * entry.sample_rate))
        start = self._offset(available, wanted)
        data, file_rate = self.clips.read(entry, start, wanted)
        wav = prepare_waveform(data, file_rate, int(round(self.sample_rate / factor)))[0]
        valid = min(wav.shape[-1], self.segment_samples)
        out = torch.zeros(1, self.segment_samples)
        out[:, :valid] = wav[:, :valid]
        return out, valid

    def __getitem__(self, index: int) -> Dict[str, Any]:
        entry = self.entries[index]
        audio, valid = self.load_segment(entry)
        return {"audio": audio, "caption": entry.caption, "num_samples": valid}


class MixingDataset(Dataset):
    """Mixes each item, with probability ``probability``, with another random item of ``dataset``.

    The partner is mixed at an SNR drawn uniformly from ``snr_range`` dB, and the captions are
    joined louder clip first (``"a dog barking and rain falling"``). Set ``enabled = False`` (or
    ``probability = 0``) to switch mixing off without rebuilding the pipeline. The mix lasts as long
    as the longer clip, or, with ``keep_length``, as long as the item itself (token extraction keeps
    batches of similar lengths that way). Lhotse's ``CutMix`` does not replace it: it mixes whole cuts
    before cropping, at an SNR set from the whole cut's energy, and joins no captions.
    """

    def __init__(self, dataset: Dataset, probability: float = 0.5,
                 snr_range: Sequence[float] = (-5.0, 5.0), enabled: bool = True, keep_length: bool = False) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        low, high = snr_range
        if low > high:
            raise ValueError(f"snr_range must be (low, high), got {tuple(snr_range)}")
        self.dataset, self.probability, self.snr_range, self.enabled = dataset, probability, (low, high), enabled
        self.keep_length = keep_length

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = dict(self.dataset[index])
        if not self.enabled or len(self) < 2 or torch.rand(()).item() >= self.probability:
            return item
        other_index = int(torch.randint(0, len(self) - 1, ()).item())
        other = self.dataset[other_index + (other_index >= index)]  # any index but this one
        low, high = self.snr_range
        snr_db = low + (high - low) * torch.rand(()).item()
        item["audio"] = mix_clips(item["audio"], other["audio"], snr_db)
        if not self.keep_length:
            item["num_samples"] = max(item["num_samples"], other["num_samples"])
        louder, quieter = (item["caption"], other["caption"]) if snr_db >= 0 else (other["caption"], item["caption"])
        item["caption"] = join_captions([louder, quieter])
        return item
