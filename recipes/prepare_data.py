"""Build a captioned training corpus from real recordings.

    python -m recipes.prepare_data --out data/corpus                       # all Debian packages below
    python -m recipes.prepare_data --out data/corpus --packages klettres-data ufoai-sound
    python -m recipes.prepare_data --out data/mine --packages none --audio-dir ~/recordings
    python -m recipes.prepare_data --out data/corpus --shar data/shar      # also as Lhotse Shar shards

Sources are Debian packages that carry licensed recordings (tuxpaint-stamps-default, klettres-data,
hydrogen-drumkits, hydrogen-drumkits-effects, ufoai-sound, widelands-data, wordwarvi-sound,
sonic-pi-samples, lmms-common, megaglest-data, warzone2100-data, 0ad-data, and the speech of
flight-of-the-amazon-queen, fillets-ng-data-cs and asterisk-core-sounds-{fr,ru}-g722 (G.722, decoded
with Debian's ``ffmpeg``), gcompris-qt-data and openttd-opensfx, the everyday sounds that
``caption_rules/everyday.tsv`` picks out of bucklespring-data, minetest-data, supertuxkart-data,
supertux-data, tuxmath-data, btanks-data, simutrans-pak64, lincity-ng-data, frozen-bubble-data,
qabcs-data, scorched3d-data, heroes-sound-effects, brainparty-data, pekka-kana-2-data,
minetest-mod-homedecor and gnome-shell-pomodoro-data (keyboard, glass, doors, clocks, horns, sirens,
fireworks, trains, planes, roosters, crows, frogs, cats, a toilet; the rest of each is left out);
and, only when named,
``fluidsynth-gm``: General MIDI clips rendered with the ``fluidsynth`` command from
fluid-soundfont-gm, see :mod:`recipes.render_midi`). Also only when named: the evaluation-only sources
lugaru-data, wesnoth-1.16-data, freedroidrpg-data, freedink-data and flightgear-data-base (everyday sounds
that ``caption_rules/evaluation.tsv`` picks out, every recording in the test split), the references of
:mod:`recipes.evaluate_generation`'s per-class section, which must come from sources the model never heard:
the training recipes refuse them. The collectors live in :mod:`recipes.sources`. Packages are fetched with
``apt-get download`` into ``--cache-dir`` (or taken from ``--deb-dir``) and unpacked with ``dpkg-deb -x``
(no root, no installation); any folder of audio files serves too (``--audio-dir``, searched recursively;
wav, flac, ogg, mp3, aiff).

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
summary and skipped. ``--shar DIR`` also writes the corpus as Lhotse Shar shards (cuts with their audio
as FLAC, ``--shard-size`` cuts a shard; :func:`recipes.lhotse_io.write_shar`), which the training
recipes read wherever they read the manifest (``data.manifest=DIR``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing
import os
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from vocoder.audio import (AudioError, as_batch, check_sample_rate, load_audio, normalize_loudness,
                           prepare_waveform, split_segments, trim_silence)

from .data import SPLITS, ManifestEntry, write_manifest
from .render_midi import RenderError
from .sources import (DEBIAN_PACKAGE, NOT_IN_ALL, PACKAGES, SourceFile, collect_user_folder, is_evaluation_only,
                      is_reserved)

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grvq-toolkit" / "debian"


class PackageError(RuntimeError):
    """A Debian package could not be downloaded or unpacked."""


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


FFMPEG_SAMPLE_RATE = 16_000  # what ffmpeg-decoded formats are converted to (G.722 is 16 kHz)


def decode_with_ffmpeg(path: str, input_format: str) -> Tuple[torch.Tensor, int]:
    """Decode a file that libsndfile cannot read (G.722 telephone audio) with Debian's ``ffmpeg``."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-f", input_format, "-i", path,
               "-f", "f32le", "-ac", "1", "-ar", str(FFMPEG_SAMPLE_RATE), "-"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise AudioError(f"{path}: decoding {input_format} needs ffmpeg (apt-get install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise AudioError(f"{path}: ffmpeg did not finish decoding within 120 s") from None
    if result.returncode != 0 or len(result.stdout) < 4:
        raise AudioError(f"cannot decode {path} as {input_format}: {result.stderr.decode(errors='replace').strip()[-200:]}")
    samples = np.frombuffer(result.stdout[: len(result.stdout) // 4 * 4], dtype="<f4")
    return as_batch(samples.copy())[0], FFMPEG_SAMPLE_RATE


@lru_cache(maxsize=4)
def open_archive(path: str) -> zipfile.ZipFile:
    """An open zip archive, kept per process: 0ad's holds tens of thousands of members, and reading
    its directory again for every recording took most of the corpus build."""
    return zipfile.ZipFile(path)


def read_payload(item: SourceFile) -> bytes:
    """The bytes of a recording stored inside a container: a zip member or a byte span."""
    if item.member is not None:
        return open_archive(item.path).read(item.member)
    offset, size = item.span
    with open(item.path, "rb") as handle:
        handle.seek(offset)
        payload = handle.read(size)
    if len(payload) != size:
        raise OSError(f"only {len(payload)} of {size} bytes at offset {offset}")
    return payload


def decode(item: SourceFile) -> Tuple[torch.Tensor, int]:
    """Read a recording (a plain file, a zip member or a byte span of an archive, or a format only
    ffmpeg reads) as float ``[C, T]`` and its rate."""
    if item.input_format is not None:
        return decode_with_ffmpeg(item.path, item.input_format)
    if item.member is None and item.span is None:
        return load_audio(item.path)
    where = item.member or f"bytes {item.span[0]}..{sum(item.span)}"
    try:
        data, sample_rate = sf.read(io.BytesIO(read_payload(item)), dtype="float32", always_2d=True)
    except (OSError, KeyError, zipfile.BadZipFile, sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"cannot read {where} from {item.path}: {err}") from None
    if data.size == 0:
        raise AudioError(f"{where} in {item.path} holds no samples")
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
    # Evaluation-only sources are never trained on: every recording of theirs is test data.
    split = "test" if is_evaluation_only(item.source) else assign_split(item.recording_id, config.valid_fraction,
                                                                         config.test_fraction)
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
        root = fetch_package(DEBIAN_PACKAGE.get(name, name), cache_dir, deb_dir)
        items.extend(PACKAGES[name](root, name))
    for folder in audio_dirs:
        items.extend(collect_user_folder(folder, source_name))
    return items


def chosen_packages(names: Sequence[str]) -> List[str]:
    """``--packages``: ``all`` is every known package but :data:`recipes.sources.NOT_IN_ALL` (the rendered
    GM clips and the evaluation-only sources, which are built only when named) and may be followed by
    more names (``all fluidsynth-gm``); ``none`` is none. Each package once, in the order given."""
    if list(names) == ["none"]:
        return []
    everything = [name for name in PACKAGES if name not in NOT_IN_ALL and not is_evaluation_only(name)]
    chosen = [package for name in names for package in (everything if name == "all" else [name])]
    return list(dict.fromkeys(chosen))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.prepare_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="corpus folder (audio/ and manifest.jsonl)")
    parser.add_argument("--packages", nargs="+", default=["all"],
                        help=f"Debian packages to use, 'all' (all but {', '.join(NOT_IN_ALL)}; more names may follow it) "
                             f"or 'none' (known: {', '.join(PACKAGES)})")
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
    parser.add_argument("--shar", type=Path, help="also write the corpus as Lhotse Shar shards into this new folder")
    parser.add_argument("--shard-size", type=int, default=1000, help="cuts per Shar shard (default 1000)")
    args = parser.parse_args(argv)

    packages = chosen_packages(args.packages)
    reserved = sorted(p for p in packages if is_reserved(p))
    if reserved:
        parser.error(f"{', '.join(reserved)} is reserved for independent evaluation (shared/DATA.md): never trained on")
    unknown = sorted(set(packages) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown package(s) {', '.join(unknown)}; known: {', '.join(PACKAGES)}")
    if not packages and not args.audio_dir:
        parser.error("nothing to do: choose --packages and/or --audio-dir")
    if args.shard_size < 1:
        parser.error(f"--shard-size must be at least 1, got {args.shard_size}")
    if args.shar is not None and args.shar.exists() and (not args.shar.is_dir() or any(args.shar.iterdir())):
        parser.error(f"--shar {args.shar} exists and is not an empty folder")  # refused before hours of work
    try:
        config = ProcessingConfig(
            sample_rate=args.sample_rate, max_segment_seconds=args.max_seconds,
            min_segment_seconds=args.min_seconds, trim_db=args.trim_db, target_rms_db=args.target_db,
            file_format=args.format, subtype="FLOAT" if args.float else "PCM_16",
            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
        )
        items = gather_sources(packages, args.cache_dir, args.deb_dir, args.audio_dir, args.source_name)
    except (ValueError, AudioError, PackageError, FileNotFoundError, RenderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    manifest, summary = build_corpus(items, args.out, config, workers=args.workers,
                                     manifest_name=args.manifest_name)
    print(summary.table())
    print(f"manifest: {manifest}")
    if args.shar is not None:
        return write_shar_copy(manifest, args.shar, args.shard_size)
    return 0


def write_shar_copy(manifest: Path, out_dir: Path, shard_size: int) -> int:
    """Write the corpus of ``manifest`` as Lhotse Shar shards into ``out_dir``; an exit status."""
    try:
        from .lhotse_io import manifest_to_cuts, write_shar  # Lhotse is an optional dependency (the train extra)
    except ImportError:
        print("error: --shar needs Lhotse: pip install 'grvq-toolkit[train]' (the corpus itself is written)",
              file=sys.stderr)
        return 2
    try:
        shards = write_shar(manifest_to_cuts(manifest), out_dir, shard_size)
    except (ValueError, AudioError, OSError) as err:  # ManifestError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"shar: {len(shards['cuts'])} shard(s) in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
