"""Where the corpus recipe finds recordings, and how each source captions them.

A collector walks one unpacked Debian package (or a user's folder) and yields a :class:`SourceFile`
per original recording: where to read it, its caption (from :mod:`recipes.captions`) and, for
speech, its language. ``PACKAGES`` maps each supported package to its collector;
:mod:`recipes.prepare_data` fetches the packages and processes what the collectors find.
"""

from __future__ import annotations

import csv
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .captions import (clean_caption, drum_caption, effect_caption, klettres_caption, language_name,
                       split_language_suffix, tuxpaint_caption)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")

# Kept for independent evaluation (shared/DATA.md): the corpus recipe refuses to collect them.
RESERVED_PACKAGES = ("hedgewars-data", "scratch", "singularity-music", "asterisk-core-sounds-en",
                     "asterisk-core-sounds-es", "asterisk-core-sounds-it")


def is_reserved(package: str) -> bool:
    """Whether ``package`` is one of the reserved evaluation packages (any asterisk en/es/it flavour)."""
    return package.startswith(RESERVED_PACKAGES)


@dataclass(frozen=True)
class SourceFile:
    """One original recording: where to read it and how to caption it (``caption=None``: excluded)."""

    source: str
    recording_id: str
    caption: Optional[str]
    path: str
    member: Optional[str] = None  # file inside the zip archive ``path`` (ufoai's .pk3)
    language: Optional[str] = None
    span: Optional[Tuple[int, int]] = None  # (offset, size) of the recording inside ``path``
    input_format: Optional[str] = None  # ffmpeg's name for a format libsndfile cannot read ("g722")

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


def speech_caption(language: str) -> str:
    """"a person speaking Czech": the packages record no speakers, so no gender is guessed."""
    return f"a person speaking {language_name(language)}"


def speech_collector(subdir: str, language: str, suffix: str = ".ogg",
                     input_format: Optional[str] = None) -> Callable[[Path, str], Iterator[SourceFile]]:
    """A collector for packages whose files under ``subdir`` (a glob) are all speech in one language."""
    def collect(root: Path, source: str) -> Iterator[SourceFile]:
        for path in sorted(root.glob(f"{subdir}/**/*{suffix}")):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                yield SourceFile(source, f"{source}/{rel}", speech_caption(language), str(path),
                                 language=language, input_format=input_format)
    return collect


class ResourceTableError(ValueError):
    """A game resource archive is not in the expected layout."""


def queen_speech_table(archive: Path) -> List[Tuple[str, int, int]]:
    """``(name, offset, size)`` of every speech clip (``*.SB``) in a Flight of the Amazon Queen
    resource file (``queen.1c``: ``QTBL``, a 6-byte version, 2 reserved bytes, a compression byte,
    a big-endian entry count, then 21-byte entries of name, bundle, offset and size)."""
    data = archive.read_bytes()
    if len(data) < 15 or data[:4] != b"QTBL":
        raise ResourceTableError(f"{archive} is not a Queen resource file (no QTBL header)")
    (count,) = struct.unpack(">H", data[13:15])
    if 15 + 21 * count > len(data):
        raise ResourceTableError(f"{archive}: its table of {count} entries runs past the end of the file")
    clips = []
    for index in range(count):
        start = 15 + 21 * index
        name = data[start:start + 12].split(b"\0")[0].decode("latin-1")
        offset, size = struct.unpack(">II", data[start + 13:start + 21])
        if offset + size > len(data):
            raise ResourceTableError(f"{archive}: entry {name!r} lies outside the file")
        if name.upper().endswith(".SB") and size > 0:
            clips.append((name, offset, size))
    return clips


def collect_queen(root: Path, source: str) -> Iterator[SourceFile]:
    """English dialogue of Flight of the Amazon Queen: MP3 clips packed in ``queen.1c``."""
    for archive in sorted(root.rglob("queen.1c")):
        for name, offset, size in queen_speech_table(archive):
            yield SourceFile(source, f"{source}/{name}", speech_caption("en"), str(archive),
                             language="en", span=(offset, size))


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
    # Animals, footsteps, weapons and impacts, crafts, weather and voice orders in reconstructed
    # ancient languages, inside public.zip. Its 61 music tracks (hours) are left out: music is
    # already well represented and would dwarf the effects.
    "0ad-data": zip_collector("public.zip", prefixes=tuple(f"audio/{d}/" for d in
                                                          ("actor", "ambient", "attack", "interface", "resource", "voice"))),
    # English adventure-game dialogue by 13 credited voice actors (MP3 at 11 kHz: narrowband as it is).
    "flight-of-the-amazon-queen": collect_queen,
    # Czech dialogue in natural sentences, many characters (Vorbis, 22 kHz).
    "fillets-ng-data-cs": speech_collector("usr/share/games/fillets-ng/sound/*/cs", "cs"),
    # Telephone prompts, one voice each, coded in G.722 (decoded with ffmpeg).
    "asterisk-core-sounds-fr-g722": speech_collector("usr/share/asterisk/sounds", "fr", ".g722", "g722"),
    "asterisk-core-sounds-ru-g722": speech_collector("usr/share/asterisk/sounds", "ru", ".g722", "g722"),
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
