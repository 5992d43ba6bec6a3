"""Where the corpus recipe finds recordings, and how each source captions them.

A collector walks one unpacked Debian package (or a user's folder) and yields a :class:`SourceFile`
per original recording: where to read it, its caption (from :mod:`recipes.captions`) and, for
speech, its language. ``PACKAGES`` maps each supported package to its collector;
:mod:`recipes.prepare_data` fetches the packages and processes what the collectors find.
"""

from __future__ import annotations

import csv
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .captions import (clean_caption, drum_caption, effect_caption, evaluation_caption, everyday_caption,
                       gcompris_caption, klettres_caption, language_name, opensfx_caption, split_language_suffix,
                       tuxpaint_caption)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")

# Kept for independent evaluation (shared/DATA.md): the corpus recipe refuses to collect them.
RESERVED_PACKAGES = ("hedgewars-data", "scratch", "singularity-music", "asterisk-core-sounds-en",
                     "asterisk-core-sounds-es", "asterisk-core-sounds-it")


def is_reserved(package: str) -> bool:
    """Whether ``package`` is one of the reserved evaluation packages (any asterisk en/es/it flavour)."""
    return package.startswith(RESERVED_PACKAGES)


# Everyday recordings for the per-class evaluation of the text-to-audio model (recipes.evaluate_generation),
# from packages that no training source shares: ``--packages all`` leaves them out, and the training recipes
# and recipes.extract_tokens refuse a manifest whose train split holds them. Captioned by
# ``caption_rules/evaluation.tsv``; their corpus is built on its own (python -m recipes.prepare_data --out
# DIR --packages <these>), every recording in its test split.
EVALUATION_ONLY_SOURCES = ("lugaru-data", "wesnoth-1.16-data", "freedroidrpg-data", "freedink-data",
                           "flightgear-data-base")


def is_evaluation_only(source: str) -> bool:
    """Whether ``source`` is one of :data:`EVALUATION_ONLY_SOURCES`."""
    return source in EVALUATION_ONLY_SOURCES


def never_train_reason(source: str) -> Optional[str]:
    """Why a manifest's ``source`` must never be trained on (evaluation-only, or a reserved package), else None.
    Reserved names match whole (``scratch``) or with a flavour (``asterisk-core-sounds-en-g722``)."""
    if is_evaluation_only(source):
        return "evaluation-only (recipes.sources.EVALUATION_ONLY_SOURCES)"
    if any(source == name or source.startswith(name + "-") for name in RESERVED_PACKAGES):
        return "reserved for independent evaluation (shared/DATA.md)"
    return None


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


def listed_collector(subdir: str, caption_of: Callable[[str], Optional[str]] = everyday_caption
                     ) -> Callable[[Path, str], Iterator[SourceFile]]:
    """A collector for packages whose everyday sounds sit among interface blips, music and fantasy effects:
    files under ``subdir`` are captioned by ``caption_rules/everyday.tsv`` (or ``caption_of``: the
    evaluation-only sources' ``evaluation.tsv``) on their path under ``usr/share``, and the files it does
    not name are left out (``caption=None``)."""
    def collect(root: Path, source: str) -> Iterator[SourceFile]:
        base = root / subdir
        for path in audio_files(base):
            caption = caption_of(path.relative_to(root / "usr/share").as_posix())
            yield SourceFile(source, f"{source}/{path.relative_to(base).as_posix()}", caption, str(path))
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


def qt_resource_files(archive: Path) -> List[Tuple[str, int, int]]:
    """``(path, offset, size)`` of every stored (uncompressed) file in a Qt binary resource file
    (``.rcc``: ``qres``, a big-endian version 1-3 and the offsets of its tree, data and names; tree
    nodes of 14 bytes, 22 from version 2, are directories (flag 2: child count, first child) or files
    (data offset); data is a 4-byte size and the bytes; names are a length, a hash and UTF-16BE).
    Compressed files are left out: Qt stores already-compressed audio as it is."""
    data = archive.read_bytes()
    if len(data) < 20 or data[:4] != b"qres":
        raise ResourceTableError(f"{archive} is not a Qt resource file (no qres header)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    if not 1 <= version <= 3 or max(tree, payload, names) >= len(data):
        raise ResourceTableError(f"{archive}: version {version} or table offsets outside the file")
    node_size = 14 if version == 1 else 22

    def read(fmt: str, at: int, what: str) -> tuple:
        if at < 0 or at + struct.calcsize(fmt) > len(data):
            raise ResourceTableError(f"{archive}: {what} at byte {at} runs past the end of the file")
        return struct.unpack_from(fmt, data, at)

    def name_of(offset: int) -> str:
        (length,) = read(">H", names + offset, "a name")
        start = names + offset + 6
        if start + 2 * length > len(data):
            raise ResourceTableError(f"{archive}: a name at byte {start} runs past the end of the file")
        return data[start:start + 2 * length].decode("utf-16-be", errors="replace")

    files: List[Tuple[str, int, int]] = []
    seen = set()
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        if index in seen:  # a damaged tree could point back at a parent
            raise ResourceTableError(f"{archive}: tree node {index} is reached twice")
        seen.add(index)
        name_offset, flags = read(">IH", tree + index * node_size, "a tree node")
        path = prefix + name_of(name_offset) if index else ""
        if flags & 2:
            count, first = read(">II", tree + index * node_size + 6, "a directory node")
            if count > len(data) // node_size:
                raise ResourceTableError(f"{archive}: directory {path!r} claims {count} children")
            stack.extend((first + child, path + "/" if path else "") for child in range(count))
        elif not flags & 5:  # 1: zlib, 4: zstd
            (data_offset,) = read(">I", tree + index * node_size + 10, "a file node")
            (size,) = read(">I", payload + data_offset, "a file size")
            start = payload + data_offset + 4
            if start + size > len(data):
                raise ResourceTableError(f"{archive}: file {path!r} lies outside the archive")
            files.append((path, start, size))
    return sorted(files)


def collect_gcompris(root: Path, source: str) -> Iterator[SourceFile]:
    """GCompris' farm animals, everyday effects, instruments and world music, stored inside the
    activities' Qt resource files (``rcc/*.rcc``), captioned by ``caption_rules/gcompris.tsv``."""
    for archive in sorted(root.rglob("*.rcc")):
        for member, offset, size in qt_resource_files(archive):
            if member.lower().endswith(AUDIO_SUFFIXES):
                yield SourceFile(source, f"{source}/{member}", gcompris_caption(member), str(archive),
                                 span=(offset, size))


def opensfx_table(archive: Path) -> List[Tuple[str, int, int]]:
    """``(stored name, offset, size)`` of every sound in an OpenTTD sound set (``.cat``: little-endian
    ``(offset, size)`` pairs, the first offset also giving the table's length, the top bit of each
    offset set; each entry is a length byte, a NUL-terminated name, then a RIFF WAVE file of ``size``
    bytes). OpenSFX's names hold each clip's title, credits and licence."""
    data = archive.read_bytes()
    if len(data) < 8:
        raise ResourceTableError(f"{archive} is too short to be an OpenTTD sound set")
    table_size = struct.unpack_from("<I", data)[0] & 0x7FFFFFFF
    if table_size == 0 or table_size % 8 or table_size > len(data):
        raise ResourceTableError(f"{archive} is not an OpenTTD sound set (table of {table_size} bytes)")
    sounds = []
    for index in range(table_size // 8):
        offset, size = struct.unpack_from("<II", data, 8 * index)
        offset &= 0x7FFFFFFF
        if offset >= len(data):
            raise ResourceTableError(f"{archive}: sound {index} starts past the end of the file")
        name = data[offset + 1:offset + 1 + data[offset]]
        start = offset + 1 + data[offset]
        riff = data[start:start + 12]
        if not name.endswith(b"\0") or start + size > len(data):
            raise ResourceTableError(f"{archive}: sound {index} runs past the end of the file")
        if size < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE" or struct.unpack_from("<I", riff, 4)[0] + 8 != size:
            raise ResourceTableError(f"{archive}: sound {index} ({name[:40]!r}) is not a complete RIFF WAVE file")
        sounds.append((name[:-1].decode("utf-8", errors="replace"), start, size))
    return sounds


def opensfx_title(name: str) -> str:
    """``'"Cow". Original ... License: ...'`` -> ``Cow`` (the whole name when it has no quoted title)."""
    match = re.match(r'\s*"([^"]*)"', name)
    return match.group(1) if match else name


def collect_opensfx(root: Path, source: str) -> Iterator[SourceFile]:
    """OpenTTD's OpenSFX set (vehicles, horns, animals, wind, machinery, applause), captioned from each
    clip's title by ``caption_rules/opensfx.tsv``; a damaged archive stops the build with its reason."""
    for archive in sorted(root.rglob("*.cat")):
        for index, (name, offset, size) in enumerate(opensfx_table(archive)):
            title = opensfx_title(name)
            readable = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_").lower()
            yield SourceFile(source, f"{source}/{archive.stem}/{index:02d}_{readable}.wav",
                             opensfx_caption(title), str(archive), span=(offset, size))


def collect_fluidsynth(root: Path, source: str) -> Iterator[SourceFile]:
    """General MIDI instruments, percussion and sound effects rendered with fluidsynth from the
    FluidR3_GM sound font in ``root`` (unpacked fluid-soundfont-gm), rendered on first use into
    ``root/.rendered`` (see :mod:`recipes.render_midi`)."""
    from .render_midi import RENDER_VERSION, SOUNDFONT, render_clips  # only this source needs it

    for clip, path in render_clips(root / SOUNDFONT, root / ".rendered" / RENDER_VERSION):
        yield SourceFile(source, f"{source}/{path.name}", clip.caption, str(path))


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
    # Farm animals, everyday effects, instruments and world music inside Qt resource files (no voices in Debian's build).
    "gcompris-qt-data": collect_gcompris,
    # Vehicles, horns, animals, wind, machinery and applause, titled and credited per clip inside opensfx.cat.
    "openttd-opensfx": collect_opensfx,
    # Everyday sounds picked out by caption_rules/everyday.tsv (the rest of each package is left out):
    # every key of a mechanical keyboard, pressed and released.
    "bucklespring-data": listed_collector("usr/share/buckle"),
    # Glass breaking, a creaking door, fire, a stream, footsteps on nine grounds.
    "minetest-data": listed_collector("usr/share/games/minetest/games/minetest_game"),
    # A clock, a car horn, fireworks, steam trains, cow, sheep, rain, thunder, birds, a jet; 628 MB for these.
    "supertuxkart-data": listed_collector("usr/share/games/supertuxkart/data"),
    # Fireworks, a firecracker, rain, thunder, a creaking door, a telephone, water.
    "supertux-data": listed_collector("usr/share/games/supertux2/sounds"),
    # A tower clock bell, a siren, a cheering crowd.
    "tuxmath-data": listed_collector("usr/share/tuxmath/sounds"),
    # A car horn, a helicopter, a train, a cow, laughter, a ticking timer, a forest ambience.
    "btanks-data": listed_collector("usr/share/games/btanks/data/sounds"),
    # Planes, a chainsaw, a ship horn, seagulls, engines, a level crossing, a forest ambience.
    "simutrans-pak64": listed_collector("usr/share/games/simutrans/pak/sound"),
    # Sirens, trains and birds among sounds named only by the building that plays them.
    "lincity-ng-data": listed_collector("usr/share/games/lincity-ng/sounds"),
    # Snoring, a typewriter key, applause.
    "frozen-bubble-data": listed_collector("usr/share/games/frozen-bubble/snd"),
    # The alphabet's picture sounds: cat, rooster, crow, frog, clock and watch ticking, farm and wild animals,
    # a keyboard, a helicopter, a train horn, a fire (its spoken letters and words, in 7 languages, are left out).
    "qabcs-data": listed_collector("usr/share/qabcs/abcs/all/noises"),
    # Car horns, a rooster, frogs, dogs, cows, sirens, helicopters, jets, rain, thunder, birds, waves, bees.
    "scorched3d-data": listed_collector("usr/share/games/scorched3d/data/globalmods"),
    # Two ticking clocks, a car horn, a cheering crowd.
    "heroes-sound-effects": listed_collector("usr/share/games/heroes/sfx"),
    # A cat meowing, glass breaking.
    "brainparty-data": listed_collector("usr/share/games/brainparty"),
    # A rooster crowing, crows cawing, a hen, a chick, a cow.
    "pekka-kana-2-data": listed_collector("usr/share/games/pekka-kana-2/data"),
    # A toilet flushing, a tap, a shower, creaking doors, a doorbell (its fire is minetest-data's).
    "minetest-mod-homedecor": listed_collector("usr/share/games/minetest/mods/homedecor"),
    # A clock and a kitchen timer ticking, four minutes of birdsong.
    "gnome-shell-pomodoro-data": listed_collector("usr/share/gnome-pomodoro/sounds"),
    # Rendered, not recorded: General MIDI programs played by fluidsynth from fluid-soundfont-gm's samples.
    "fluidsynth-gm": collect_fluidsynth,
    # Evaluation only (EVALUATION_ONLY_SOURCES), picked out by caption_rules/evaluation.tsv:
    # footsteps on grass, snow and stone, a fire, wind, wolves.
    "lugaru-data": listed_collector("usr/share/games/lugaru/Sounds", evaluation_caption),
    # Birdsong, a campfire, crickets at night, a rooster, laughter.
    "wesnoth-1.16-data": listed_collector("usr/share/games/wesnoth/1.16", evaluation_caption),
    # Glass breaking.
    "freedroidrpg-data": listed_collector("usr/share/freedroidrpg/data/sound/effects", evaluation_caption),
    # A fire crackling, a bird chirping.
    "freedink-data": listed_collector("usr/share/games/dink/dink/Sound", evaluation_caption),
    # The flight simulator's helicopter, propeller and jet engines, rain, thunder, wind and waves.
    "flightgear-data-base": listed_collector("usr/share/games/flightgear", evaluation_caption),
}

# Sources whose Debian package has another name (what ``apt-get download`` fetches).
DEBIAN_PACKAGE = {"fluidsynth-gm": "fluid-soundfont-gm"}
# Left out of ``--packages all``: rendering needs the fluidsynth command installed system-wide, and the
# evaluation-only sources are never training data.
NOT_IN_ALL = ("fluidsynth-gm", *EVALUATION_ONLY_SOURCES)


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
