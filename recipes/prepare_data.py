"""Build a captioned training corpus from real recordings.

    python -m recipes.prepare_data --out data/corpus                       # all Debian packages below
    python -m recipes.prepare_data --out data/corpus --packages klettres-data ufoai-sound
    python -m recipes.prepare_data --out data/mine --packages none --audio-dir ~/recordings

Sources are Debian packages that carry licensed recordings (tuxpaint-stamps-default, klettres-data,
hydrogen-drumkits, hydrogen-drumkits-effects, ufoai-sound, widelands-data, wordwarvi-sound,
sonic-pi-samples, lmms-common), fetched with ``apt-get download`` into ``--cache-dir`` (or taken
from ``--deb-dir``) and unpacked with ``dpkg-deb -x`` (no root, no installation), and/or any folder
of audio files (``--audio-dir``, searched recursively; wav, flac, ogg, mp3, aiff).

Captions for a user folder, first found wins:
  1. a sidecar text file next to the audio, same name with ``.txt`` (``rain/take1.wav`` ->
     ``rain/take1.txt``), whose first non-empty line is the caption;
  2. ``captions.csv`` at the top of the folder, with a header ``path,caption`` and paths relative to
     the folder (``rain/take1.wav,light rain on a tin roof``);
  3. otherwise a caption made from the file name ("the sound of take") by :mod:`recipes.captions`.

Every file is decoded, down-mixed to mono, resampled, trimmed of leading and trailing silence,
loudness-normalised (RMS target, limited so the peak never clips), cut into segments of at most
``--max-seconds`` (equal lengths; pieces shorter than ``--min-seconds`` dropped) and written to
``OUT/audio/<source>/``. ``OUT/manifest.jsonl`` lists the segments (see :mod:`recipes.data`);
the split is drawn from a hash of the original recording id, so all segments of one recording land
in the same split and re-running gives the same split. Unreadable files are counted, named in the
summary and skipped.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import multiprocessing
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import soundfile as sf
import torch
from tqdm import tqdm

from vocoder.audio import (AudioError, as_batch, check_sample_rate, load_audio, normalize_loudness,
                           prepare_waveform, split_segments, trim_silence)

from .captions import (clean_caption, drum_caption, effect_caption, klettres_caption,
                       split_language_suffix, tuxpaint_caption)
from .data import SPLITS, ManifestEntry, write_manifest

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grvq-toolkit" / "debian"


class PackageError(RuntimeError):
    """A Debian package could not be downloaded or unpacked."""


@dataclass(frozen=True)
class SourceFile:
    """One original recording: where to read it and how to caption it (``caption=None``: excluded)."""

    source: str
    recording_id: str
    caption: Optional[str]
    path: str
    member: Optional[str] = None  # file inside the zip archive ``path`` (ufoai's .pk3)
    language: Optional[str] = None


@dataclass(frozen=True)
class ProcessingConfig:
    """How recordings are turned into corpus segments."""

    sample_rate: int = 16_000
    max_segment_seconds: float = 20.0
    min_segment_seconds: float = 0.2
    trim_db: float = -40.0  # silence = frames this far below the loudest frame
    target_rms_db: float = -20.0
    peak: float = 0.95
    file_format: str = "wav"  # "wav" or "flac"
    subtype: str = "PCM_16"  # or "FLOAT" (wav only)
    valid_fraction: float = 0.05
    test_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_sample_rate(self.sample_rate)
        if not 0 < self.min_segment_seconds <= self.max_segment_seconds:
            raise ValueError("need 0 < min_segment_seconds <= max_segment_seconds")
        if self.file_format not in ("wav", "flac"):
            raise ValueError(f"file_format must be 'wav' or 'flac', got {self.file_format!r}")
        if self.subtype not in ("PCM_16", "FLOAT") or (self.subtype == "FLOAT" and self.file_format == "flac"):
            raise ValueError(f"subtype must be PCM_16, or FLOAT for wav; got {self.subtype!r}")
        if not (0 <= self.valid_fraction and 0 <= self.test_fraction and self.valid_fraction + self.test_fraction < 1):
            raise ValueError("valid_fraction and test_fraction must be >= 0 and sum to less than 1")
        if not 0 < self.peak <= 1:
            raise ValueError(f"peak must be in (0, 1], got {self.peak}")


def assign_split(recording_id: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split from a hash of the recording id (stable across runs and machines)."""
    digest = hashlib.sha1(recording_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def decode(item: SourceFile) -> Tuple[torch.Tensor, int]:
    """Read a recording (plain file, or a member of a zip archive) as float ``[C, T]`` and its rate."""
    if item.member is None:
        return load_audio(item.path)
    try:
        with zipfile.ZipFile(item.path) as archive:
            payload = archive.read(item.member)
        data, sample_rate = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    except (OSError, KeyError, zipfile.BadZipFile, sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"cannot read {item.member} from {item.path}: {err}") from None
    return as_batch(data.T)[0], check_sample_rate(sample_rate)


@dataclass
class FileResult:
    """What became of one recording: its manifest entries, or why it was skipped."""

    item: SourceFile
    entries: List[ManifestEntry] = field(default_factory=list)
    skipped: Optional[str] = None  # reason


def output_stem(item: SourceFile) -> str:
    """A readable, collision-free relative path for a recording's segments."""
    relative = Path(item.recording_id.removeprefix(item.source + "/")).with_suffix("").as_posix()
    readable = re.sub(r"[^A-Za-z0-9._/-]+", "_", relative).strip("/.")
    tag = hashlib.sha1(item.recording_id.encode("utf-8")).hexdigest()[:8]
    return f"audio/{item.source}/{readable}-{tag}"


def process_file(item: SourceFile, config: ProcessingConfig, out_dir: Path) -> FileResult:
    """Decode, clean and cut one recording, writing its segments under ``out_dir``."""
    try:
        wav, sample_rate = decode(item)
        wav = prepare_waveform(wav, sample_rate, config.sample_rate)[0]
    except AudioError as err:
        return FileResult(item, skipped=f"unreadable ({err})")
    wav = trim_silence(wav, config.sample_rate, config.trim_db)
    if wav.shape[-1] == 0:
        return FileResult(item, skipped="silent")
    wav = normalize_loudness(wav, config.target_rms_db, config.peak)
    pieces = split_segments(wav, int(config.max_segment_seconds * config.sample_rate),
                            int(round(config.min_segment_seconds * config.sample_rate)))
    if not pieces:
        return FileResult(item, skipped="too short")
    split = assign_split(item.recording_id, config.valid_fraction, config.test_fraction)
    stem = output_stem(item)
    result = FileResult(item)
    for index, piece in enumerate(pieces):
        relative = f"{stem}-{index:03d}.{config.file_format}" if len(pieces) > 1 else f"{stem}.{config.file_format}"
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), piece[0].numpy(), config.sample_rate, subtype=config.subtype,
                 format=config.file_format.upper())
        result.entries.append(ManifestEntry(
            path=relative, duration=piece.shape[-1] / config.sample_rate, sample_rate=config.sample_rate,
            source=item.source, caption=item.caption or "", split=split,
            recording_id=item.recording_id, language=item.language,
        ))
    return result


# --------------------------------------------------------------------------- sources


def audio_files(root: Path, exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Audio files under ``root`` in sorted order, skipping paths that contain any of ``exclude``."""
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            if not any(part in path.as_posix() for part in exclude):
                yield path


def first_line(path: Path, skip_assignments: bool = False) -> Optional[str]:
    """First non-empty line of a text file (optionally skipping ``key=value`` lines), or None."""
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not (skip_assignments and "=" in line):
            return line
    return None


def collect_tuxpaint(root: Path, source: str) -> Iterator[SourceFile]:
    stamps = root / "usr/share/tuxpaint/stamps"
    for path in audio_files(stamps):
        stamp = split_language_suffix(path.stem)[0]
        stamp = stamp[:-len("_desc")] if stamp.endswith("_desc") else stamp
        description = first_line(path.with_name(stamp + ".txt"), skip_assignments=True)
        rel = path.relative_to(stamps).as_posix()
        caption = tuxpaint_caption(rel, description)
        yield SourceFile(source, f"{source}/{rel}", caption.text if caption else None, str(path),
                         language=caption.language if caption else None)


def collect_klettres(root: Path, source: str) -> Iterator[SourceFile]:
    base = root / "usr/share/klettres"
    for path in audio_files(base):
        rel = path.relative_to(base).as_posix()
        caption = klettres_caption(rel)
        yield SourceFile(source, f"{source}/{rel}", caption.text if caption else None, str(path),
                         language=caption.language if caption else None)


def drumkit_instruments(kit: Path) -> Dict[str, str]:
    """Sample file name -> instrument name, from a Hydrogen ``drumkit.xml`` (old and new layouts)."""
    try:
        tree = ET.parse(kit / "drumkit.xml")
    except (OSError, ET.ParseError):
        return {}
    names: Dict[str, str] = {}
    for instrument in tree.iter():
        if instrument.tag.split("}")[-1] != "instrument":
            continue
        name = next((c.text or "" for c in instrument if c.tag.split("}")[-1] == "name"), "")
        for node in instrument.iter():
            if node.tag.split("}")[-1] == "filename" and node.text:
                names[Path(node.text).name] = name
    return names


def collect_hydrogen(root: Path, source: str) -> Iterator[SourceFile]:
    kits = root / "usr/share/hydrogen/data/drumkits"
    for kit in sorted(p for p in kits.iterdir() if p.is_dir()) if kits.is_dir() else ():
        instruments = drumkit_instruments(kit)
        for path in audio_files(kit):
            caption = drum_caption(instruments.get(path.name, ""), kit.name, path.name)
            yield SourceFile(source, f"{source}/{path.relative_to(kits).as_posix()}", caption, str(path))


def zip_collector(pattern: str, prefixes: Sequence[str] = ("",),
                  caption: Callable[[str], Optional[str]] = effect_caption) -> Callable[[Path, str], Iterator[SourceFile]]:
    """A collector for packages that keep their audio inside zip archives (``pattern`` under the
    package root: ufoai's ``.pk3``, warzone2100's ``.wz``); only members under ``prefixes``."""
    def collect(root: Path, source: str) -> Iterator[SourceFile]:
        for archive in sorted(root.rglob(pattern)):
            try:
                with zipfile.ZipFile(archive) as bundle:
                    members = sorted(n for n in bundle.namelist() if n.lower().endswith(AUDIO_SUFFIXES)
                                     and n.startswith(tuple(prefixes)))
            except (OSError, zipfile.BadZipFile):
                continue
            for member in members:
                yield SourceFile(source, f"{source}/{member}", caption(member), str(archive), member=member)
    return collect


def effect_collector(subdir: str, exclude: Sequence[str] = ()) -> Callable[[Path, str], Iterator[SourceFile]]:
    """A collector for packages whose file paths under ``subdir`` name the sounds."""
    def collect(root: Path, source: str) -> Iterator[SourceFile]:
        base = root / subdir
        for path in audio_files(base, exclude):
            rel = path.relative_to(base).as_posix()
            yield SourceFile(source, f"{source}/{rel}", effect_caption(rel), str(path))
    return collect


PACKAGES: Dict[str, Callable[[Path, str], Iterator[SourceFile]]] = {
    "tuxpaint-stamps-default": collect_tuxpaint,
    "klettres-data": collect_klettres,
    "hydrogen-drumkits": collect_hydrogen,
    "hydrogen-drumkits-effects": collect_hydrogen,
    "ufoai-sound": zip_collector("*.pk3"),
    "widelands-data": effect_collector("usr/share/games/widelands/data"),
    "wordwarvi-sound": effect_collector("usr/share/wordwarvi"),
    # sonic-pi's buffers/ holds generated noise, not recordings.
    "sonic-pi-samples": effect_collector("usr/share/sonic-pi/samples"),
    # lmms' waveforms/ and shapes/ are single-cycle oscillator tables, not recordings.
    "lmms-common": effect_collector("usr/share/lmms/samples", exclude=("/waveforms/", "/shapes/")),
    # Effects, animals and ambience per tileset, and units' spoken acknowledgements (several actors).
    "megaglest-data": effect_collector("usr/share/games/megaglest", exclude=("/data/core/menu/",)),
    # English voice messages and narrated campaign briefings, plus effects, inside base.wz (a zip).
    "warzone2100-data": zip_collector("base.wz", prefixes=("audio/", "sequenceaudio/")),
}


def load_caption_table(root: Path) -> Dict[str, str]:
    """``captions.csv`` (header ``path,caption``) at the top of a user folder, as relative path -> caption."""
    table_path = root / "captions.csv"
    if not table_path.is_file():
        return {}
    with table_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
            raise ValueError(f"{table_path} needs a header line 'path,caption'")
        return {Path(row["path"]).as_posix(): row["caption"] for row in reader if row.get("path")}


def collect_user_folder(root: Path, source: Optional[str] = None) -> Iterator[SourceFile]:
    """Every audio file under ``root``, captioned by sidecar ``.txt``, ``captions.csv`` or file name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    source = source or root.resolve().name
    table = load_caption_table(root)
    for path in audio_files(root):
        rel = path.relative_to(root).as_posix()
        caption = first_line(path.with_suffix(".txt")) or table.get(rel) or effect_caption(rel)
        yield SourceFile(source, f"{source}/{rel}", clean_caption(caption), str(path))


def run_quietly(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def fetch_package(name: str, cache_dir: Path, deb_dir: Optional[Path] = None) -> Path:
    """Unpacked contents of Debian package ``name``: reuses the cache, else downloads and unpacks it."""
    unpacked = cache_dir / "unpacked" / name
    if (unpacked / ".complete").is_file():
        return unpacked
    debs = sorted((deb_dir or cache_dir / "debs").glob(f"{name}_*.deb"))
    if not debs:
        download_dir = cache_dir / "debs"
        download_dir.mkdir(parents=True, exist_ok=True)
        attempt = run_quietly(["apt-get", "download", name], download_dir)
        if attempt.returncode != 0:  # stale package lists: refresh once and retry
            run_quietly(["apt-get", "update"], download_dir)
            attempt = run_quietly(["apt-get", "download", name], download_dir)
        if attempt.returncode != 0:
            raise PackageError(f"apt-get download {name} failed: {attempt.stderr.strip()[-300:]}")
        debs = sorted(download_dir.glob(f"{name}_*.deb"))
    unpacked.mkdir(parents=True, exist_ok=True)
    result = run_quietly(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], unpacked)
    if result.returncode != 0:
        raise PackageError(f"dpkg-deb -x {debs[-1].name} failed: {result.stderr.strip()[-300:]}")
    (unpacked / ".complete").touch()
    return unpacked


# --------------------------------------------------------------------------- corpus


@dataclass
class CorpusSummary:
    """Hours and file counts per source and split, and the recordings that were skipped."""

    seconds: Dict[Tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    files: Dict[Tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    recordings: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: Dict[str, List[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, result: FileResult) -> None:
        if result.skipped is not None:
            self.skipped[result.skipped.split(" (")[0]].append(result.item.recording_id)
            return
        self.recordings[result.item.source] += 1
        for entry in result.entries:
            self.seconds[entry.source, entry.split] += entry.duration
            self.files[entry.source, entry.split] += 1

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def table(self) -> str:
        """A plain-text table: hours (and segment files) per source and split, with totals."""
        sources = sorted({s for s, _ in self.seconds})
        header = f"{'source':<28}{'recordings':>11}" + "".join(f"{s + ' h':>10}{'files':>7}" for s in SPLITS) + f"{'total h':>10}"
        lines = [header, "-" * len(header)]
        for source in sources + ["TOTAL"]:
            picked = sources if source == "TOTAL" else [source]
            row = f"{source:<28}{sum(self.recordings[s] for s in picked):>11}"
            for split in SPLITS:
                row += f"{sum(self.seconds[s, split] for s in picked) / 3600:>10.3f}"
                row += f"{sum(self.files[s, split] for s in picked):>7}"
            row += f"{sum(self.seconds[s, sp] for s in picked for sp in SPLITS) / 3600:>10.3f}"
            lines.append(row)
        lines.append(f"skipped recordings: {self.num_skipped}")
        for reason, names in sorted(self.skipped.items()):
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            lines.append(f"  {reason}: {len(names)} ({shown})")
        return "\n".join(lines)


def _init_worker() -> None:
    torch.set_num_threads(1)


def build_corpus(items: Iterable[SourceFile], out_dir: Path, config: ProcessingConfig = ProcessingConfig(),
                 workers: int = 1, manifest_name: str = "manifest.jsonl",
                 progress: bool = True) -> Tuple[Path, CorpusSummary]:
    """Process recordings into ``out_dir`` and write its manifest; returns the manifest path and a summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = CorpusSummary()
    todo = []
    for item in items:
        if item.caption is None:
            summary.skipped["excluded by caption rules"].append(item.recording_id)
        else:
            todo.append(item)
    work = partial(process_file, config=config, out_dir=out_dir)
    entries: List[ManifestEntry] = []
    bar = tqdm(total=len(todo), desc="preparing audio", unit="file", disable=not progress)
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
        with context.Pool(workers, initializer=_init_worker) as pool:
            results = pool.imap_unordered(work, todo, chunksize=8)
            for result in results:
                summary.add(result)
                entries.extend(result.entries)
                bar.update()
    else:
        for item in todo:
            result = work(item)
            summary.add(result)
            entries.extend(result.entries)
            bar.update()
    bar.close()
    manifest = out_dir / manifest_name
    write_manifest(manifest, sorted(entries, key=lambda e: e.path))
    return manifest, summary


def gather_sources(packages: Sequence[str], cache_dir: Path, deb_dir: Optional[Path],
                   audio_dirs: Sequence[Path], source_name: Optional[str]) -> List[SourceFile]:
    """All recordings of the chosen packages and user folders (packages are fetched as needed)."""
    items: List[SourceFile] = []
    for name in tqdm(packages, desc="fetching packages", unit="package", disable=not packages):
        root = fetch_package(name, cache_dir, deb_dir)
        items.extend(PACKAGES[name](root, name))
    for folder in audio_dirs:
        items.extend(collect_user_folder(folder, source_name))
    return items


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.prepare_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (audio/ and manifest.jsonl)")
    parser.add_argument("--packages", nargs="+", default=["all"],
                        help=f"Debian packages to use, 'all' or 'none' (known: {', '.join(PACKAGES)})")
    parser.add_argument("--audio-dir", type=Path, action="append", default=[],
                        help="a folder of your own audio (repeatable); captions: sidecar NAME.txt or captions.csv")
    parser.add_argument("--source-name", help="source label for --audio-dir files (default: the folder name)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where .deb files are downloaded and unpacked")
    parser.add_argument("--deb-dir", type=Path, help="a folder of already downloaded .deb files")
    parser.add_argument("--sample-rate", type=int, default=16_000)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="longest segment")
    parser.add_argument("--min-seconds", type=float, default=0.2, help="shorter pieces are dropped")
    parser.add_argument("--trim-db", type=float, default=-40.0, help="silence threshold below the loudest frame")
    parser.add_argument("--target-db", type=float, default=-20.0, help="RMS loudness target in dBFS")
    parser.add_argument("--format", choices=("wav", "flac"), default="wav")
    parser.add_argument("--float", action="store_true", help="write 32-bit float wav instead of 16-bit PCM")
    parser.add_argument("--valid-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--manifest-name", default="manifest.jsonl")
    args = parser.parse_args(argv)

    packages = list(PACKAGES) if args.packages == ["all"] else [] if args.packages == ["none"] else args.packages
    unknown = sorted(set(packages) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown package(s) {', '.join(unknown)}; known: {', '.join(PACKAGES)}")
    if not packages and not args.audio_dir:
        parser.error("nothing to do: choose --packages and/or --audio-dir")
    try:
        config = ProcessingConfig(
            sample_rate=args.sample_rate, max_segment_seconds=args.max_seconds,
            min_segment_seconds=args.min_seconds, trim_db=args.trim_db, target_rms_db=args.target_db,
            file_format=args.format, subtype="FLOAT" if args.float else "PCM_16",
            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
        )
        items = gather_sources(packages, args.cache_dir, args.deb_dir, args.audio_dir, args.source_name)
    except (ValueError, AudioError, PackageError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    manifest, summary = build_corpus(items, args.out, config, workers=args.workers,
                                     manifest_name=args.manifest_name)
    print(summary.table())
    print(f"manifest: {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
