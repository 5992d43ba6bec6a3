"""The everyday sources: GCompris' Qt resource files, OpenTTD's OpenSFX archive, General MIDI rendering, and the
everyday sounds picked out of game and educational packages by ``caption_rules/everyday.tsv``."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf

from recipes.captions import everyday_caption, gcompris_caption
from recipes.coverage import caption_classes
from recipes.data import read_manifest
from recipes.prepare_data import build_corpus, main as prepare_main
from recipes.render_midi import (RenderError, planned_clips, read_programs, render_clips, variable_length,
                                 midi_file, note, select)
from recipes.sources import (DEBIAN_PACKAGE, NOT_IN_ALL, PACKAGES, ResourceTableError, collect_fluidsynth, is_reserved,
                             opensfx_table, opensfx_title, qt_resource_files)

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def tone(seconds: float = 0.5, rate: int = 16_000, fmt: str = "WAV") -> bytes:
    """A short sine tone encoded as ``fmt`` in memory."""
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format=fmt)
    return buffer.getvalue()


# --------------------------------------------------------------------------- Qt resource files


def qt_rcc(files: Dict[str, bytes]) -> bytes:
    """A version-3 Qt binary resource file holding ``files`` (path -> bytes), laid out as rcc does:
    each directory's children are consecutive tree nodes, numbered breadth first from the root."""
    tree: dict = {}
    for path, payload in files.items():
        node = tree
        *folders, leaf = path.split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = payload
    order = [("", tree)]  # breadth first: (name, dict or bytes)
    first_child = {}
    index = 0
    while index < len(order):
        name, node = order[index]
        if isinstance(node, dict):
            first_child[index] = len(order)
            order.extend(sorted(node.items()))
        index += 1
    names, data, nodes = b"", b"", b""
    for index, (name, node) in enumerate(order):
        encoded = name.encode("utf-16-be")
        name_offset = len(names)
        names += struct.pack(">HI", len(name), 0) + encoded
        if isinstance(node, dict):
            nodes += struct.pack(">IHII", name_offset, 2, len(node), first_child[index]) + bytes(8)
        else:
            nodes += struct.pack(">IHHHI", name_offset, 0, 0, 0, len(data)) + bytes(8)
            data += struct.pack(">I", len(node)) + node
    header_size = 24
    tree_at, data_at = header_size, header_size + len(nodes)
    names_at = data_at + len(data)
    return b"qres" + struct.pack(">IIIII", 3, tree_at, data_at, names_at, 0) + nodes + data + names


GCOMPRIS = "usr/share/gcompris-qt/rcc"
FARM = "gcompris/src/activities/explore_farm_animals/resource/animals"


def test_qt_resource_reader_finds_every_stored_file(tmp_path: Path) -> None:
    files = {f"{FARM}/cow.ogg": b"moo", f"{FARM}/dog.ogg": b"woof!", "gcompris/readme.txt": b"text"}
    archive = tmp_path / "farm.rcc"
    archive.write_bytes(qt_rcc(files))
    found = qt_resource_files(archive)
    data = archive.read_bytes()
    assert {path: data[offset:offset + size] for path, offset, size in found} == files


@pytest.mark.parametrize("damage", ["magic", "truncated", "version"])
def test_qt_resource_reader_refuses_damaged_files(tmp_path: Path, damage: str) -> None:
    data = qt_rcc({f"{FARM}/cow.ogg": b"moo" * 10})
    if damage == "magic":
        data = b"xres" + data[4:]
    elif damage == "truncated":
        data = data[:40]
    else:
        data = data[:4] + struct.pack(">I", 9) + data[8:]
    archive = tmp_path / "bad.rcc"
    archive.write_bytes(data)
    with pytest.raises(ResourceTableError, match="bad.rcc"):
        qt_resource_files(archive)


def test_gcompris_collector_captions_and_decodes(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / GCOMPRIS).mkdir(parents=True)
    (root / GCOMPRIS / "explore_farm_animals.rcc").write_bytes(qt_rcc({
        f"{FARM}/cow.ogg": tone(fmt="OGG"),
        "gcompris/src/activities/memory-sound/resource/LRBark_1_LA_cut.ogg": tone(fmt="OGG"),
        "gcompris/src/core/resource/sounds/bleep.wav": tone(),  # an interface sound: left out
    }))
    items = list(PACKAGES["gcompris-qt-data"](root, "gcompris-qt-data"))
    assert sorted((Path(i.recording_id).name, i.caption) for i in items) == [
        ("LRBark_1_LA_cut.ogg", "a dog barking"), ("bleep.wav", None), ("cow.ogg", "a cow mooing")]
    manifest, summary = build_corpus(items, tmp_path / "corpus", progress=False)
    entries = read_manifest(manifest)
    assert sorted(e.caption for e in entries) == ["a cow mooing", "a dog barking"]
    assert summary.num_skipped == 1 and all(e.source == "gcompris-qt-data" for e in entries)


# --------------------------------------------------------------------------- OpenTTD sound sets

OPENSFX = "usr/share/games/openttd/baseset/opensfx"


def opensfx_cat(sounds: Dict[str, bytes]) -> bytes:
    """An OpenTTD ``.cat`` sound set: (offset | 1 << 31, size) pairs, then a length byte, a
    NUL-terminated name and a RIFF WAVE file per sound."""
    table_size = 8 * len(sounds)
    table, body = b"", b""
    for name, wav in sounds.items():
        stored = name.encode() + b"\0"
        table += struct.pack("<II", (table_size + len(body)) | 1 << 31, len(wav))
        body += bytes([len(stored)]) + stored + wav
    return table + body


CREDITED = {
    '"Cow". Original "Cow - Moan 2.wav" by "Jarred Gib". License: Creative Commons Zero 1.0.': tone(),
    '"Modern car horn". Original "claxon.wav" by "han1". License: CC-BY 3.0.': tone(0.3),
    '"Unused/Nothing". Trivial empty sound file. License: Creative Commons Zero 1.0.': tone(0.01),
}


def test_opensfx_reader_and_collector(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / OPENSFX).mkdir(parents=True)
    archive = root / OPENSFX / "opensfx.cat"
    archive.write_bytes(opensfx_cat(CREDITED))
    table = opensfx_table(archive)
    assert [name for name, _, _ in table] == list(CREDITED)
    assert [archive.read_bytes()[offset:offset + size] for _, offset, size in table] == list(CREDITED.values())
    assert opensfx_title(table[1][0]) == "Modern car horn"
    items = list(PACKAGES["openttd-opensfx"](root, "openttd-opensfx"))
    assert [i.caption for i in items] == ["a cow mooing", "a car horn honking", None]
    assert len({i.recording_id for i in items}) == 3
    entries = read_manifest(build_corpus(items, tmp_path / "corpus", progress=False)[0])
    assert sorted(e.caption for e in entries) == ["a car horn honking", "a cow mooing"]


@pytest.mark.parametrize("damage", ["truncated", "riff", "table", "short"])
def test_opensfx_reader_refuses_damaged_archives(tmp_path: Path, damage: str) -> None:
    data = bytearray(opensfx_cat(CREDITED))
    if damage == "truncated":
        data = data[:-100]
    elif damage == "riff":
        start = data.index(b"RIFF")
        data[start:start + 4] = b"JUNK"
    elif damage == "table":
        data[0:4] = struct.pack("<I", 13 | 1 << 31)
    else:
        data = data[:5]
    archive = tmp_path / "opensfx.cat"
    archive.write_bytes(bytes(data))
    with pytest.raises(ResourceTableError, match="opensfx.cat"):
        opensfx_table(archive)


def test_damaged_archive_stops_prepare_data_with_its_reason(tmp_path: Path, capsys) -> None:
    unpacked = tmp_path / "cache/unpacked/openttd-opensfx"
    (unpacked / OPENSFX).mkdir(parents=True)
    (unpacked / ".complete").touch()
    (unpacked / OPENSFX / "opensfx.cat").write_bytes(opensfx_cat(CREDITED)[:-100])
    code = prepare_main(["--out", str(tmp_path / "out"), "--packages", "openttd-opensfx",
                         "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "runs past the end" in capsys.readouterr().err


# --------------------------------------------------------------------------- General MIDI rendering


def test_variable_length_quantities() -> None:
    assert [variable_length(v) for v in (0, 127, 128, 0x3FFF, 0x200000)] == [
        b"\x00", b"\x7f", b"\x81\x00", b"\xff\x7f", b"\x81\x80\x80\x00"]


def test_midi_file_layout() -> None:
    data = midi_file(select(0, 0, 40) + note(0, 60, 0, 480, 100), tempo_bpm=120)
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 480)
    assert data[14:18] == b"MTrk" and struct.unpack(">I", data[18:22])[0] == len(data) - 22
    assert b"\xff\x51\x03" + (500_000).to_bytes(3, "big") in data and data.endswith(b"\xff\x2f\x00")
    assert b"\xc0\x28" in data and b"\x90\x3c\x64" in data


def test_planned_clips_are_deterministic_and_bounded() -> None:
    programs = read_programs()
    first, second = planned_clips(), planned_clips()
    assert [(c.name, c.midi) for c in first] == [(c.name, c.midi) for c in second]
    assert len({c.name for c in first}) == len(first) and len(first) < 400
    assert {c.caption for c in first} == {row.caption for row in programs}


def test_rendered_source_is_named_and_kept_out_of_all() -> None:
    assert DEBIAN_PACKAGE["fluidsynth-gm"] == "fluid-soundfont-gm" and "fluidsynth-gm" in NOT_IN_ALL
    assert "gcompris-qt-data" not in NOT_IN_ALL and "openttd-opensfx" not in NOT_IN_ALL


def test_missing_soundfont_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="sound font not found"):
        list(collect_fluidsynth(tmp_path, "fluidsynth-gm"))


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                    reason="needs fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth fluid-soundfont-gm)")
def test_render_one_short_program(tmp_path: Path) -> None:
    clip = next(c for c in planned_clips() if c.caption == "a solo violin playing a melody")
    [(rendered, path)] = render_clips(SOUNDFONT, tmp_path, [clip])
    audio, rate = sf.read(path, dtype="float32")
    assert rendered == clip and rate == 24_000 and np.isfinite(audio).all()
    assert audio.shape[0] > rate and np.sqrt(np.mean(audio ** 2)) > 1e-3
    before = path.stat().st_mtime_ns
    render_clips(SOUNDFONT, tmp_path, [clip])  # a second call reuses the render
    assert path.stat().st_mtime_ns == before


# --------------------------------------------------------------------------- captions -> classes


@pytest.mark.parametrize("caption, classes", [
    ("a dog barking", ["dog"]),
    ("a car horn honking", ["car_horn"]),
    ("a truck engine starting and an air horn honking", ["engine", "car_horn"]),
    ("a steam train departing", ["train"]),
    ("a train slowing down", ["train"]),
    ("a propeller plane taking off", ["airplane"]),
    ("a jet plane taking off", ["airplane"]),
    ("a helicopter flying", ["helicopter"]),
    ("a chainsaw cutting", ["chainsaw"]),
    ("waves crashing on the shore", ["sea_waves"]),
    ("a church bell ringing", ["church_bells"]),
    ("a bird tweeting", ["chirping_birds"]),
    ("a hand clap", ["clapping"]),
    ("frogs croaking in a pond during a storm", ["frog"]),
    ("a breathy noise", []),  # GM's breath noise is a wind-instrument effect, not a person breathing
    ("a circular saw cutting wood", []),  # a power saw, not ESC-50's hand saw
    ("a level crossing bell ringing", []),
])
def test_new_captions_map_to_their_classes(caption: str, classes: list) -> None:
    assert caption_classes(caption) == classes


def test_every_rendered_instrument_is_music() -> None:
    for row in read_programs():
        if row.kind == "melody" or (row.kind == "drum" and row.caption != "a hand clap"):
            assert caption_classes(row.caption) == ["music"], row.caption


# --------------------------------------------------------------------------- sounds picked out of game packages

PICKED = {  # path under usr/share -> the caption everyday.tsv gives it (None: left out)
    "buckle/wav/1e-1.wav": "a keyboard key being pressed",
    "buckle/wav/1e-0.wav": "a keyboard key being released",
    "games/minetest/games/minetest_game/mods/default/sounds/default_break_glass.2.ogg": "glass breaking",
    "games/minetest/games/minetest_game/mods/default/sounds/default_gravel_footstep.3.ogg": "a footstep on gravel",
    "games/minetest/games/minetest_game/mods/doors/sounds/doors_door_open.ogg": "a wooden door creaking open",
    "games/minetest/games/minetest_game/mods/default/sounds/default_place_node.1.ogg": None,
    "games/supertuxkart/data/sfx/clock.ogg": "a clock ticking",
    "games/supertuxkart/data/tracks/black_forest/steamLocomotive.ogg": "a steam locomotive chugging",
    "games/supertuxkart/data/sfx/nitro.ogg": None,
    "tuxmath/sounds/towerclock.wav": "a tower clock bell striking",
    "games/btanks/data/sounds/klaxon.ogg": "a car horn honking",
    "games/btanks/data/sounds/klaxon-funny.ogg": None,
    "games/simutrans/pak/sound/tree-cutting.wav": "a chainsaw cutting down a tree",
    "games/lincity-ng/sounds/Health3.wav": "an ambulance siren",
    "games/lincity-ng/sounds/Health2.wav": None,  # named by its building only: left out
    "games/frozen-bubble/snd/snore.ogg": "a person snoring",
    "games/supertux2/sounds/ticking.wav": "a clock ticking",
    "qabcs/abcs/all/noises/watch.ogg": "a watch ticking",
    "qabcs/abcs/all/noises/calf.ogg": "a calf mooing",
    "qabcs/abcs/all/noises/eagle-owl.ogg": "an owl hooting",
    "qabcs/abcs/all/noises/horn.ogg": "a bulb horn honking",  # a toy bulb horn, not a car's
    "qabcs/abcs/all/noises/mouse.ogg": "a mouse squeaking",  # the animal, not a computer mouse
    "qabcs/abcs/all/noises/rocket.ogg": None,  # a synthesised whistle
    "qabcs/abcs/en/sounds/words/rooster.ogg": None,  # the spoken word, not the picture's sound
    "games/scorched3d/data/globalmods/apoc/data/wav/misc/carhorn3.wav": "a car horn honking",
    "games/scorched3d/data/globalmods/apoc/data/wav/misc/dog2.wav": "a dog barking",
    "games/scorched3d/data/globalmods/none/data/wav/misc/frogs.wav": "frogs croaking at night",
    "games/scorched3d/data/globalmods/none/data/wav/misc/f18_2.wav": "a jet plane flying by",
    "games/scorched3d/data/globalmods/apoc/data/wav/misc/cessna.wav": None,  # unreadable
    "games/scorched3d/data/globalmods/none/data/wav/misc/lava1.wav": None,
    "games/heroes/sfx/clock02.wav": "a clock ticking",
    "games/heroes/sfx/claxon.wav": "a car horn honking",
    "games/heroes/sfx/sleep.wav": None,  # not clearly snoring
    "games/brainparty/meow.wav": "a cat meowing",
    "games/brainparty/mouse_click.wav": None,  # too short to keep
    "games/pekka-kana-2/data/sfx/doodle.wav": "a rooster crowing",
    "games/pekka-kana-2/data/sprites/p_doodle.wav": None,  # the same crow, shortened
    "games/pekka-kana-2/data/sprites/crow_ko.wav": "a crow cawing",
    "games/pekka-kana-2/data/sprites/frog_att.wav": None,
    "games/minetest/mods/homedecor/homedecor_bathroom/sounds/homedecor_toilet_flush.ogg": "a toilet flushing",
    "games/minetest/mods/homedecor/homedecor_gastronomy/sounds/toaster.ogg": None,
    "games/minetest/mods/homedecor/fake_fire/sounds/fire_small.ogg": None,  # minetest-data's fire_small, again
    "gnome-pomodoro/sounds/timer.ogg": "a kitchen timer ticking",
    "gnome-pomodoro/sounds/loud-bell.ogg": None,
}


@pytest.mark.parametrize("path, caption", PICKED.items())
def test_everyday_rules_caption_only_what_they_name(path: str, caption) -> None:
    assert everyday_caption(path) == caption


def test_listed_collectors_caption_pick_and_decode(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    sounds = root / "usr/share/games/supertuxkart/data"
    for relative in ("sfx/horn.ogg", "sfx/clock.ogg", "sfx/nitro.ogg", "tracks/scotland/sheep.ogg"):
        (sounds / relative).parent.mkdir(parents=True, exist_ok=True)
        (sounds / relative).write_bytes(tone(fmt="OGG"))
    items = list(PACKAGES["supertuxkart-data"](root, "supertuxkart-data"))
    assert [(i.recording_id, i.caption) for i in items] == [
        ("supertuxkart-data/sfx/clock.ogg", "a clock ticking"),
        ("supertuxkart-data/sfx/horn.ogg", "a car horn honking"),
        ("supertuxkart-data/sfx/nitro.ogg", None),
        ("supertuxkart-data/tracks/scotland/sheep.ogg", "sheep bleating")]
    manifest, summary = build_corpus(items, tmp_path / "corpus", progress=False)
    captions = sorted(e.caption for e in read_manifest(manifest))
    assert captions == ["a car horn honking", "a clock ticking", "sheep bleating"]
    assert summary.num_skipped == 1


def test_every_everyday_package_has_a_collector_and_is_not_reserved() -> None:
    for name in ("bucklespring-data", "minetest-data", "supertuxkart-data", "supertux-data", "tuxmath-data",
                 "btanks-data", "simutrans-pak64", "lincity-ng-data", "frozen-bubble-data", "qabcs-data",
                 "scorched3d-data", "heroes-sound-effects", "brainparty-data", "pekka-kana-2-data",
                 "minetest-mod-homedecor", "gnome-shell-pomodoro-data"):
        assert name in PACKAGES and name not in NOT_IN_ALL and not is_reserved(name)


@pytest.mark.parametrize("caption, classes", [
    ("a keyboard key being pressed", ["keyboard_typing"]),
    ("a typewriter key clacking", ["keyboard_typing"]),
    ("a tower clock bell striking", ["church_bells"]),
    ("a timer ticking", ["clock_tick"]),
    ("a single clock tick", ["clock_tick"]),
    ("an ambulance siren", ["siren"]),
    ("a wooden door creaking open", ["door_wood_creaks"]),
    ("a wooden door closing", []),
    ("fireworks whistling and exploding", ["fireworks"]),
    ("a firework rocket whistling", ["fireworks"]),
    ("a person snoring", ["snoring"]),
    ("a footstep on gravel", ["footsteps"]),
    ("a chainsaw cutting down a tree", ["chainsaw"]),
    ("a ship horn blowing", []),
    ("a steam whistle blowing", []),
    ("a rooster crowing", ["rooster"]),
    ("a crow cawing", ["crow"]),
    ("a cat meowing", ["cat"]),
    ("a frog croaking", ["frog"]),
    ("frogs croaking at night", ["frog"]),
    ("a clock ticking", ["clock_tick"]),
    ("a watch ticking", ["clock_tick"]),
    ("a kitchen timer ticking", ["clock_tick"]),
    ("knocking on a door", ["door_wood_knock"]),
    ("a door creaking shut", ["door_wood_creaks"]),
    ("a toilet flushing", ["toilet_flush"]),
    ("a calf mooing", ["cow"]),
    ("a fire truck siren wailing", ["siren"]),
    ("a police car siren", ["siren"]),
    ("a train horn blowing", ["train"]),
    ("a tractor engine running", ["engine"]),
    ("a jet plane flying by", ["airplane"]),
    ("bees buzzing", ["insects"]),
    ("a grasshopper chirping", ["insects"]),
    ("a sparrow chirping", ["chirping_birds"]),
    ("birds singing in a forest", ["chirping_birds"]),
    ("typing on a computer keyboard", ["keyboard_typing"]),
    ("a goose honking", []),  # honking, but no car horn
    ("a bulb horn honking", []),
    ("a mouse squeaking", []),  # the animal, not mouse_click
    ("a wolf howling", []),
    ("a doorbell ringing", []),
    ("water running from a tap", []),
])
def test_everyday_captions_map_to_their_classes(caption: str, classes: list) -> None:
    assert caption_classes(caption) == classes


def test_qabcs_collector_reads_only_the_picture_sounds(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    for relative in ("all/noises/cat.ogg", "all/noises/watch.ogg", "all/noises/rocket.ogg", "en/sounds/words/cat.ogg"):
        path = root / "usr/share/qabcs/abcs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tone(fmt="OGG"))
    items = list(PACKAGES["qabcs-data"](root, "qabcs-data"))
    assert [(i.recording_id, i.caption) for i in items] == [
        ("qabcs-data/cat.ogg", "a cat meowing"), ("qabcs-data/rocket.ogg", None),
        ("qabcs-data/watch.ogg", "a watch ticking")]


def test_gcompris_rules_caption_the_knock_and_the_helicopter() -> None:
    activities = "gcompris/src/activities"
    assert gcompris_caption(f"{activities}/melody/resource/knock.wav") == "knocking on a door"
    assert gcompris_caption(f"{activities}/guessnumber/resource/helicopter.wav") == "a helicopter flying"
    assert gcompris_caption(f"{activities}/clickgame/resource/drip.wav") is None  # under 0.1 s
