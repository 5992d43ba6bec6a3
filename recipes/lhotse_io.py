"""Corpus manifests as Lhotse CutSets and Shar shards, and back.

    python -m recipes.lhotse_io to-lhotse data/corpus/manifest.jsonl data/cuts.jsonl.gz
    python -m recipes.lhotse_io from-lhotse data/cuts.jsonl.gz data/corpus2/manifest.jsonl
    python -m recipes.lhotse_io to-shar data/corpus/manifest.jsonl data/shar [--shard-size 1000]
    python -m recipes.prepare_data ... --out data/corpus --shar data/shar   # the same, as the corpus is built

Each manifest entry becomes one Recording and one cut spanning it, with a SupervisionSegment that
carries the caption as ``text`` (and the ``language``); ``source``, ``split``, ``recording_id`` and
``path`` travel as the cut's custom fields, so manifest -> cuts -> manifest gives the same lines.
Cuts from elsewhere, or the recordings manifest that ``lhotse prepare`` writes (with the
supervisions manifest beside it), read as entries too: the caption is their supervisions' text, the source ``lhotse``, the recording id
``source/<recording id>`` and the split ``train`` unless their custom fields say otherwise.
Shar shards hold the audio itself (FLAC) beside the cuts: ``data.manifest`` of the recipes may
point at a cuts file, a Shar folder or a manifest (:func:`recipes.data.open_clips`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import soundfile as sf
from lhotse import (AudioSource, CutSet, MonoCut, MultiCut, Recording, RecordingSet, SupervisionSegment,
                    SupervisionSet, load_manifest)
from lhotse.cut.data import DataCut

from vocoder.audio import AudioError

from .data import SPLITS, ManifestEntry, ManifestError, PathLike, is_lhotse, read_manifest, write_manifest

FOREIGN_SOURCE = "lhotse"  # the source of cuts without our custom fields
CUSTOM_FIELDS = ("source", "split", "recording_id", "path")
SHAR_FIELDS = ("cuts", "recording")  # the only Shar fields read: no other payload is ever decoded
# Lhotse's own allowance for a cut that ends past its recording (LHOTSE_AUDIO_DURATION_MISMATCH_TOLERANCE).
DURATION_TOLERANCE = 0.025


def entry_to_cut(entry: ManifestEntry, root: Path) -> DataCut:
    """One Recording and one cut spanning it for ``entry`` (its audio under ``root``)."""
    audio = root / entry.path
    try:
        info = sf.info(str(audio))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ManifestError(f"cannot read {audio}: {err}") from None
    if info.samplerate != entry.sample_rate:
        raise ManifestError(f"{audio}: the manifest says {entry.sample_rate} Hz, the file is {info.samplerate} Hz")
    channels = list(range(info.channels))
    recording = Recording(id=entry.path, sources=[AudioSource(type="file", channels=channels,
                                                              source=str(audio.absolute()))],
                          sampling_rate=info.samplerate, num_samples=info.frames,
                          duration=info.frames / info.samplerate)
    channel = 0 if info.channels == 1 else channels
    supervision = SupervisionSegment(id=entry.path, recording_id=entry.path, start=0.0, duration=entry.duration,
                                     channel=channel, text=entry.caption, language=entry.language)
    custom = {"source": entry.source, "split": entry.split, "recording_id": entry.recording_id, "path": entry.path}
    kind = MonoCut if info.channels == 1 else MultiCut
    return kind(id=entry.path, start=0.0, duration=entry.duration, channel=channel, recording=recording,
                supervisions=[supervision], custom=custom)


def manifest_to_cuts(manifest: PathLike) -> CutSet:
    """Every entry of ``manifest`` as a cut (its files must exist)."""
    manifest = Path(manifest)
    entries = read_manifest(manifest)
    seen = set()
    for entry in entries:
        if entry.path in seen:
            raise ManifestError(f"{manifest}: {entry.path} is listed twice (a path names one cut)")
        seen.add(entry.path)
    return CutSet.from_cuts(entry_to_cut(entry, manifest.parent) for entry in entries)


def _file_source(cut: DataCut) -> Optional[str]:
    """The path of ``cut``'s audio when it is one local file, else None (in memory, URL, command)."""
    sources = cut.recording.sources
    return sources[0].source if len(sources) == 1 and sources[0].type == "file" else None


def cut_to_entry(cut: DataCut, where: str) -> ManifestEntry:
    """The manifest entry of ``cut`` (``where`` names it in errors); raises :class:`ManifestError`."""
    where = f"{where}: cut {cut.id}"
    if not isinstance(cut, DataCut) or not cut.has_recording:
        raise ManifestError(f"{where}: a {type(cut).__name__} without one recording (mixed or padding cuts "
                            f"are not read)")
    custom = cut.custom or {}
    texts = [s.text for s in cut.supervisions if s.text is not None]
    languages = {s.language for s in cut.supervisions if s.language is not None}
    source = custom.get("source", FOREIGN_SOURCE)
    row = {"path": custom.get("path") or _file_source(cut) or cut.id, "duration": cut.duration,
           "sample_rate": cut.sampling_rate, "source": source,
           "caption": texts[0] if len(texts) == 1 else " ".join(t for t in texts if t),
           "split": custom.get("split", "train"),
           "recording_id": custom.get("recording_id", f"{source}/{cut.recording_id}")}
    if len(languages) == 1:
        row["language"] = languages.pop()
    return ManifestEntry.from_json(row, where)


def _recording_cuts(recordings: RecordingSet, path: Path) -> CutSet:
    """One cut per recording, with the supervisions of the manifest that ``lhotse prepare`` writes
    beside it (``<corpus>_supervisions_<part>.jsonl.gz``), when there is one."""
    supervisions = path.with_name(path.name.replace("_recordings_", "_supervisions_"))
    if "_recordings_" not in path.name or not supervisions.is_file():
        return CutSet.from_manifests(recordings=recordings)
    return CutSet.from_manifests(recordings=recordings, supervisions=load_manifest(supervisions, SupervisionSet))


def read_cuts(path: PathLike) -> CutSet:
    """A Lhotse cuts file (``*.jsonl.gz``) or Shar folder, loaded whole; raises :class:`ManifestError`.
    A recordings manifest of ``lhotse prepare`` reads as one cut per recording, with its supervisions."""
    path = Path(path)
    try:
        if path.is_dir():
            shards = {field: sorted(str(p) for p in path.glob(f"{field}.*")) for field in SHAR_FIELDS}
            if not shards["cuts"]:
                raise ManifestError(f"{path}: no Lhotse Shar shards (cuts.*.jsonl.gz) in this folder")
            if len(shards["recording"]) != len(shards["cuts"]):
                raise ManifestError(f"{path}: {len(shards['cuts'])} cut shard(s) but {len(shards['recording'])} "
                                    f"recording shard(s): write Shar with the audio included (to-shar)")
            return CutSet.from_shar(fields=shards).to_eager()
        if not path.is_file():
            raise ManifestError(f"Lhotse cuts not found: {path}")
        manifest = load_manifest(path)
        if isinstance(manifest, RecordingSet):
            return _recording_cuts(manifest, path)
        if not isinstance(manifest, CutSet):
            raise ManifestError(f"{path} holds a {type(manifest).__name__}: point at cuts or recordings")
        return manifest.to_eager()
    except ManifestError:
        raise
    except Exception as err:  # noqa: BLE001 - Lhotse raises many kinds for a malformed file
        raise ManifestError(f"{path}: not a readable Lhotse CutSet ({type(err).__name__}: {err})") from None


class LhotseClips:
    """Clips of a Lhotse CutSet (:class:`recipes.data.ClipSource`): crops are read with
    ``cut.truncate(...).load_audio()``. Shar audio is held in memory, compressed, once loaded."""

    def __init__(self, cuts: Iterable[DataCut], where: str) -> None:
        self.where = where
        self._cuts: Dict[ManifestEntry, DataCut] = {}
        for cut in cuts:
            entry = cut_to_entry(cut, where)
            if entry in self._cuts:
                raise ManifestError(f"{where}: cuts {self._cuts[entry].id} and {cut.id} give the same entry")
            self._cuts[entry] = cut
        if not self._cuts:
            raise ManifestError(f"{where} holds no cuts")

    @classmethod
    def open(cls, path: PathLike) -> "LhotseClips":
        return cls(read_cuts(path), str(path))

    def entries(self, split: Optional[str] = None) -> List[ManifestEntry]:
        if split is not None and split not in SPLITS:
            raise ManifestError(f"unknown split {split!r}; choose from {SPLITS}")
        return [entry for entry in self._cuts if split is None or entry.split == split]

    def read(self, entry: ManifestEntry, start: int, frames: int) -> Tuple[np.ndarray, int]:
        cut = self._cuts[entry]
        rate = cut.sampling_rate
        available = int(round(cut.duration * rate))
        frames = min(frames, available - start)
        try:
            if frames <= 0:
                raise ValueError(f"no samples at offset {start}")
            crop = cut.truncate(offset=start / rate, duration=frames / rate, preserve_id=True)
            audio = crop.load_audio()
        except Exception as err:  # noqa: BLE001 - Lhotse's loaders raise many kinds
            raise AudioError(f"cannot read cut {cut.id} of {self.where}: {err}") from None
        audio = np.asarray(audio, dtype=np.float32).reshape(-1, np.shape(audio)[-1])
        if audio.shape[-1] == 0:
            raise AudioError(f"cut {cut.id} of {self.where} returned no samples at offset {start}")
        return audio, rate


def _relative(path: str, where: str) -> str:
    """``path`` if it is a plain relative path (no ``..``), else a :class:`ManifestError`."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts:
        raise ManifestError(f"{where}: custom path {path!r} is not a relative path inside the corpus")
    return path


def _spans_recording(cut: DataCut) -> bool:
    return cut.start == 0 and cut.duration >= cut.recording.duration - DURATION_TOLERANCE


def cuts_to_manifest(cuts: Iterable[DataCut], manifest: PathLike, where: str = "cuts") -> int:
    """Write ``manifest`` for ``cuts``: a cut spanning one local file keeps pointing at it (by its
    custom ``path`` when that names the same file from here); other audio (Shar, URLs, parts of a
    recording) is written beside the manifest. Returns the number of entries."""
    manifest = Path(manifest)
    root = manifest.parent.absolute()
    entries = []
    for cut in cuts:
        entry = cut_to_entry(cut, where)
        custom_path = (cut.custom or {}).get("path")
        source = _file_source(cut)
        if source is not None and _spans_recording(cut):
            same = custom_path and (root / custom_path).is_file() and os.path.samefile(root / custom_path, source)
            path = custom_path if same else os.path.relpath(os.path.abspath(source), root)
        else:
            path = _relative(custom_path, f"{where}: cut {cut.id}") if custom_path else \
                f"audio/{re.sub(r'[^A-Za-z0-9_.-]', '_', cut.id)}.flac"
            target = root / path
            if target.suffix.lstrip(".").upper() not in sf.available_formats():
                target, path = target.with_suffix(".flac"), str(PurePosixPath(path).with_suffix(".flac"))
            if target.exists():
                raise ManifestError(f"{target} exists: convert into another folder")
            try:
                audio = cut.load_audio()
            except Exception as err:  # noqa: BLE001 - Lhotse's loaders raise many kinds
                raise AudioError(f"cannot read cut {cut.id} of {where}: {err}") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(target), np.asarray(audio).T, cut.sampling_rate)
        entries.append(replace(entry, path=path))
    return write_manifest(manifest, entries)


def write_shar(cuts: CutSet, out_dir: PathLike, shard_size: int = 1000) -> Dict[str, List[str]]:
    """Write ``cuts`` as Lhotse Shar shards with their audio (FLAC) into a new or empty ``out_dir``."""
    out_dir = Path(out_dir)
    if shard_size < 1:
        raise ManifestError(f"shard size must be at least 1, got {shard_size}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ManifestError(f"{out_dir} exists and is not an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return cuts.to_shar(out_dir, fields={"recording": "flac"}, shard_size=shard_size)


def _load(path: Path) -> CutSet:
    """Cuts from a manifest.jsonl, a cuts file or a Shar folder."""
    return read_cuts(path) if is_lhotse(path) else manifest_to_cuts(path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.lhotse_io", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to_lhotse = commands.add_parser("to-lhotse", help="manifest.jsonl -> Lhotse cuts (.jsonl.gz)")
    to_lhotse.add_argument("manifest", type=Path)
    to_lhotse.add_argument("out", type=Path, help="cuts file to write (*.jsonl.gz)")
    from_lhotse = commands.add_parser("from-lhotse", help="Lhotse cuts or Shar folder -> manifest.jsonl")
    from_lhotse.add_argument("cuts", type=Path)
    from_lhotse.add_argument("out", type=Path, help="OUT_DIR/manifest.jsonl (audio not on disk is written beside it)")
    to_shar = commands.add_parser("to-shar", help="manifest.jsonl or Lhotse cuts -> Shar shards with audio")
    to_shar.add_argument("manifest", type=Path)
    to_shar.add_argument("out", type=Path, help="a new or empty folder")
    to_shar.add_argument("--shard-size", type=int, default=1000, help="cuts per shard (default 1000)")
    args = parser.parse_args(argv)
    try:
        if args.command == "to-lhotse":
            if not args.out.name.endswith(".jsonl.gz"):
                raise ManifestError(f"{args.out}: a cuts file is named *.jsonl.gz")
            cuts = manifest_to_cuts(args.manifest)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            cuts.to_file(args.out)
            print(f"wrote {len(cuts)} cuts to {args.out}")
        elif args.command == "from-lhotse":
            if args.out.suffix != ".jsonl":
                raise ManifestError(f"{args.out}: a manifest is named *.jsonl")
            count = cuts_to_manifest(read_cuts(args.cuts), args.out, str(args.cuts))
            print(f"wrote {count} entries to {args.out}")
        else:
            shards = write_shar(_load(args.manifest), args.out, args.shard_size)
            print(f"wrote {len(shards['cuts'])} shard(s) to {args.out}")
    except (ManifestError, AudioError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
