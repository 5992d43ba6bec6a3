"""Corpus preparation, captions, manifests and datasets (synthetic audio written into tmp_path)."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recipes import prepare_data as prep
from recipes import sources
from recipes.captions import (drum_caption, effect_caption, join_captions, klettres_caption,
                              split_language_suffix, tuxpaint_caption)
from recipes.data import (AudioSegmentDataset, ManifestEntry, ManifestError, MixingDataset, mix_clips,
                          read_manifest, write_manifest)
from vocoder.audio import db

RATE = 16_000


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write(path: Path, data: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate)
    return path


def entry(path: str, split: str = "train", duration: float = 1.0, caption: str = "a tone") -> ManifestEntry:
    return ManifestEntry(path=path, duration=duration, sample_rate=RATE, source="synthetic", caption=caption,
                         split=split, recording_id=path)


# --------------------------------------------------------------------------- manifest


def test_manifest_round_trip_and_split_filter(tmp_path):
    write(tmp_path / "a.wav", tone(1.0))
    write(tmp_path / "b.wav", tone(1.0))
    entries = [entry("a.wav"), ManifestEntry("b.wav", 1.0, RATE, "synthetic", "a hum", "valid", "b", "fr")]
    manifest = tmp_path / "manifest.jsonl"
    assert write_manifest(manifest, entries) == 2
    assert read_manifest(manifest) == entries
    assert read_manifest(manifest, split="valid") == entries[1:]
    assert "language" not in json.loads(manifest.read_text().splitlines()[0])


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('{"path": "a.wav"}', "missing field"),
    (json.dumps({**entry("a.wav").to_json(), "split": "dev"}), "split must be one of"),
    (json.dumps({**entry("a.wav").to_json(), "duration": -1}), "duration must be a positive"),
    (json.dumps(entry("missing.wav").to_json()), "audio file not found"),
])
def test_manifest_errors_name_the_line(tmp_path, line, message):
    write(tmp_path / "a.wav", tone(0.5))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps(entry("a.wav").to_json()) + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(manifest)
    assert ":2:" in str(info.value)


# --------------------------------------------------------------------------- signal processing


def test_trim_silence_keeps_the_sound_only():
    wav = torch.cat([torch.zeros(8000), torch.from_numpy(tone(0.5)), torch.zeros(8000)])[None]
    trimmed = prep.trim_silence(wav, RATE, threshold_db=-40.0, frame_seconds=0.01)
    assert abs(trimmed.shape[-1] - 8000) <= 2 * 160 + 1  # one frame of margin each side
    assert prep.trim_silence(torch.zeros(1, 4000), RATE).shape[-1] == 0


def test_normalize_loudness_hits_target_and_never_clips():
    noise = torch.randn(1, RATE) * 0.01
    out = prep.normalize_loudness(noise, target_rms_db=-20.0, peak=0.95)
    assert db(float(out.pow(2).mean().sqrt())) == pytest.approx(-20.0, abs=0.05)
    click = torch.zeros(1, RATE)
    click[0, 100] = 0.1  # reaching -20 dB RMS would need a peak far above full scale
    limited = prep.normalize_loudness(click, target_rms_db=-20.0, peak=0.95)
    assert float(limited.abs().max()) == pytest.approx(0.95)


def test_split_segments_equal_pieces_and_min_length():
    pieces = prep.split_segments(torch.zeros(1, 45 * 100), max_samples=20 * 100, min_samples=10)
    assert [p.shape[-1] for p in pieces] == [1500, 1500, 1500]
    assert prep.split_segments(torch.zeros(1, 5), max_samples=100, min_samples=10) == []


def test_assign_split_is_deterministic_and_proportional():
    ids = [f"rec{i}" for i in range(4000)]
    splits = [prep.assign_split(i, 0.1, 0.05) for i in ids]
    assert splits == [prep.assign_split(i, 0.1, 0.05) for i in ids]
    assert splits.count("valid") / len(ids) == pytest.approx(0.1, abs=0.02)
    assert splits.count("test") / len(ids) == pytest.approx(0.05, abs=0.02)


def test_process_file_resamples_downmixes_and_keeps_pitch(tmp_path):
    source = write(tmp_path / "in.wav", tone(1.0, rate=44_100, freq=1000.0, channels=2), rate=44_100)
    item = sources.SourceFile("synthetic", "synthetic/in.wav", "a beep", str(source))
    result = prep.process_file(item, prep.ProcessingConfig(), tmp_path / "out")
    assert result.skipped is None and len(result.entries) == 1
    data, rate = sf.read(str(tmp_path / "out" / result.entries[0].path))
    assert rate == RATE and data.ndim == 1 and len(data) == pytest.approx(RATE, abs=400)
    peak_hz = np.argmax(np.abs(np.fft.rfft(data))) * RATE / len(data)
    assert peak_hz == pytest.approx(1000.0, abs=5.0)


# --------------------------------------------------------------------------- corpus building


def test_user_folder_corpus_with_captions_splits_and_bad_files(tmp_path):
    folder = tmp_path / "mine"
    write(folder / "rain" / "take1.wav", tone(1.0, freq=300))
    (folder / "rain" / "take1.txt").write_text("\nLight rain on a tin roof.\n")
    write(folder / "long.flac", tone(25.0, rate=8000, freq=200), rate=8000)
    write(folder / "dog_bark.wav", tone(0.5, freq=600))
    (folder / "captions.csv").write_text("path,caption\nlong.flac,a long low hum\n")
    write(folder / "silent.wav", np.zeros(RATE, dtype=np.float32))
    (folder / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(200)))
    (folder / "empty.ogg").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio at all")

    items = list(sources.collect_user_folder(folder, "mine"))
    manifest, summary = prep.build_corpus(items, tmp_path / "corpus", progress=False)

    entries = read_manifest(manifest)  # also checks every file exists
    captions = {e.recording_id: e.caption for e in entries}
    assert captions["mine/rain/take1.wav"] == "light rain on a tin roof"
    assert captions["mine/long.flac"] == "a long low hum"
    assert captions["mine/dog_bark.wav"] == "the sound of dog bark"
    long_segments = [e for e in entries if e.recording_id == "mine/long.flac"]
    assert len(long_segments) == 2 and len({e.split for e in long_segments}) == 1
    assert all(e.duration <= 20.0 and e.sample_rate == RATE for e in entries)
    assert summary.num_skipped == 4
    assert sorted(summary.skipped) == ["silent", "unreadable"]
    assert "mine/corrupt.wav" in summary.skipped["unreadable"]
    table = summary.table()
    assert "mine" in table and "skipped recordings: 4" in table


def test_ufoai_members_are_read_from_the_zip(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, tone(0.5, rate=22_050), 22_050, format="OGG")
    archive = tmp_path / "pkg" / "usr/share/games/ufoai/base/0snd.pk3"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as pk3:
        pk3.writestr("sound/weapons/reload-smg.ogg", buffer.getvalue())
        pk3.writestr("sound/readme.txt", "text")
    items = list(sources.PACKAGES["ufoai-sound"](tmp_path / "pkg", "ufoai-sound"))
    assert [(i.member, i.caption) for i in items] == [("sound/weapons/reload-smg.ogg", "a weapon being reloaded")]
    wav, rate = prep.decode(items[0])
    assert rate == 22_050 and wav.shape[0] == 1 and wav.shape[-1] == pytest.approx(11_025, abs=10)


def test_hydrogen_and_tuxpaint_collectors_read_package_metadata(tmp_path):
    kit = tmp_path / "hydrogen/usr/share/hydrogen/data/drumkits/MyKit"
    write(kit / "sn_01.flac", tone(0.3))
    write(kit / "x.flac", tone(0.3))
    (kit / "drumkit.xml").write_text(
        "<drumkit_info><name>MyKit</name><instrumentList>"
        "<instrument><name>Snare Rimshot</name><layer><filename>sn_01.flac</filename></layer></instrument>"
        "<instrument><name>Hi-Hat Open</name><layer><filename>x.flac</filename></layer></instrument>"
        "</instrumentList></drumkit_info>")
    drums = {Path(i.path).name: i.caption for i in sources.collect_hydrogen(tmp_path / "hydrogen", "h")}
    assert drums == {"sn_01.flac": "a snare drum rimshot", "x.flac": "an open hi-hat"}

    stamps = tmp_path / "tux/usr/share/tuxpaint/stamps"
    write(stamps / "animals/birds/owl.ogg", tone(0.3))
    write(stamps / "animals/birds/owl_desc_fr.ogg", tone(0.3))
    (stamps / "animals/birds/owl.txt").write_text("An owl.\nfr.utf8=Un hibou.\n")
    write(stamps / "symbols/faces/happy.ogg", tone(0.3))
    found = {Path(i.path).name: (i.caption, i.language) for i in sources.collect_tuxpaint(tmp_path / "tux", "t")}
    assert found == {"owl.ogg": ("the sound of an owl", None),
                     "owl_desc_fr.ogg": ("a person speaking French", "fr"),
                     "happy.ogg": (None, None)}


def test_fetch_package_reports_apt_failures(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, cwd):
        calls.append(command[:2])
        return prep.subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package")

    monkeypatch.setattr(prep, "run_quietly", fake_run)
    with pytest.raises(prep.PackageError, match="Unable to locate"):
        prep.fetch_package("no-such-package", tmp_path)
    assert calls == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    cached = tmp_path / "unpacked" / "cached-package"
    cached.mkdir(parents=True)
    (cached / ".complete").touch()
    assert prep.fetch_package("cached-package", tmp_path) == cached


# --------------------------------------------------------------------------- captions


@pytest.mark.parametrize("path, caption", [
    ("sound/weapons/reload-smg.ogg", "a weapon being reloaded"),
    ("sound/weapons/bullet-chaingun-40x.ogg", "a machine gun firing"),
    ("sound/footsteps/gravel3.ogg", "footsteps on gravel"),
    ("sound/soldiers/femalehurt02.ogg", "a woman screaming in pain"),
    ("sound/civilians/maledeath01.ogg", "a man groaning in pain"),
    ("sound/misc/breakglass03.ogg", "glass breaking"),
    ("games/widelands/data/music/ingame_04.ogg", "instrumental music"),
    ("games/widelands/data/sound/animals/wolf_01.ogg", "a wolf howling"),
    ("games/widelands/data/sound/sawmill/sawmill_00.ogg", "a saw cutting wood"),
    ("wordwarvi/sounds/bombexplosion.ogg", "an explosion"),
    ("sound/geoscape/combat-rocket-exp.ogg", "an explosion"),
    ("sound/geoscape/combat-rocket.ogg", "a rocket launching"),
    ("wordwarvi/sounds/rocket_exhaust_1.ogg", "a jet engine roaring"),
    ("sound/misc/electro.ogg", "an electric crackle"),
    ("lmms/samples/drums/snare_electro01.ogg", "a snare drum"),
    ("wordwarvi/sounds/metalbang6.ogg", "metal banging"),
    ("sonic-pi/samples/ambi_choir.flac", "an ambient choir"),
    ("sonic-pi/samples/bd_haus.flac", "a kick drum"),
    ("sonic-pi/samples/tabla_na.flac", "a tabla"),
    ("sonic-pi/samples/elec_hi_snare.flac", "a snare drum"),
    ("lmms/samples/drums/hihat_closed01.ogg", "a closed hi-hat"),
    ("lmms/samples/instruments/violin_pizzicato01.ogg", "a violin playing pizzicato"),
    ("foo/squeaky_Thing2.wav", "the sound of squeaky thing"),
    # megaglest, warzone2100, 0 A.D.: game paths whose file names alone would give "the sound of pcv"
    ("techs/megapack/factions/persian/units/swordman/sounds/swordman_ack2.wav", "a person responding to an order"),
    ("techs/megapack/factions/persian/units/worker/sounds/attack1.wav", "swords clashing"),
    ("techs/megapack/factions/persian/units/elephant/sounds/eleattack1.wav", "an elephant trumpeting"),
    ("techs/megapack/commondata/sounds/golem_ack1.wav", "a monster roaring"),
    ("techs/megapack/commondata/sounds/archmage_die1.wav", "a person crying out in pain"),
    ("tilesets/autumn/sounds/nightime.ogg", "a night ambience with crickets"),
    ("audio/memressp/routing/pcv1.ogg", "a person speaking English"),
    ("audio/extra/pcv640.ogg", "a person speaking English"),
    ("audio/taunts/taunt1/haha1.ogg", "a person laughing"),
    ("audio/sfx/weapons/mgbar1.ogg", "a machine gun firing"),
    ("audio/voice/latin/civ/civ_male_attack.ogg", "a person calling out a short order in Latin"),
    ("audio/actor/fauna/animal/cattle_03.ogg", "a cow mooing"),
    ("audio/actor/human/movement/Footsteps/Footstep_Grass_Running.ogg", "footsteps on grass"),
    ("audio/actor/singlesteps/fs_snow_4.ogg", "footsteps on snow"),
    ("audio/attack/impact/shield_metal_03.ogg", "a weapon striking a metal shield"),
    ("audio/resource/mining/mine_stone_1.ogg", "a pickaxe striking stone"),
    ("audio/actor/gate/stonegate_close_1.ogg", "a stone gate closing"),
])
def test_effect_captions(path, caption):
    assert effect_caption(path) == caption


@pytest.mark.parametrize("instrument, kit, caption", [
    ("Kick (Tama Superstar 22\")", "ForzeeStereo", "a kick drum hit"),
    ("Snare Jazz", "Millo", "a snare drum hit"),
    ("Closed HH", "Millo", "a closed hi-hat"),
    ("VariBreaks Hat 1 Op", "VariBreaks", "an open hi-hat"),
    ("Sabian Hat Pedal", "The Black Pearl", "a hi-hat pedal"),
    ("Pearl Tom Floor", "The Black Pearl", "a floor tom hit"),
    ("c3 - bass drum 1", "rumpf", "a kick drum hit"),
    ("Djembe1 Slap", "circAfrique v4", "a djembe hit"),
    ("F#major  \\ B5", "belofilms_GuitarStrums", "an acoustic guitar strumming a chord"),
    ("Sample: beats_08-37.flac", "rumpf", "a drum hit"),
])
def test_drum_captions(instrument, kit, caption):
    assert drum_caption(instrument, kit) == caption


@pytest.mark.parametrize("path, description, caption, language", [
    ("animals/birds/owl_desc_fr.ogg", None, "a person speaking French", "fr"),
    ("animals/birds/owl_desc.ogg", None, "a person speaking English", "en"),
    ("food/fruit/cartoon/raspberry_desc_pt_BR.wav", None, "a person speaking Portuguese", "pt_BR"),
    ("symbols/math/7_el.ogg", None, "a person saying a number in Greek", "el"),
    ("symbols/math/7.ogg", None, "a person saying a number", None),
    ("symbols/alphabets/english/filled/uppercase/T_filled_desc_lt.ogg", None, "a person saying a letter in Lithuanian", "lt"),
    ("symbols/alphabets/german/filled/lowercase/ss_eszett_filled.ogg", None, "a person saying a letter in German", "de"),
    ("animals/mammals/aquatic/sea_lion.ogg", "A sea lion.", "the sound of a sea lion", None),
    ("animals/mammals/bovines/sheep_lamb.ogg", "A baby sheep (a lamb).", "the sound of a baby sheep", None),
    ("household/toilet.ogg", "A toilet.", "a toilet flushing", None),
])
def test_tuxpaint_captions(path, description, caption, language):
    result = tuxpaint_caption(path, description)
    assert (result.text, result.language) == (caption, language)


@pytest.mark.parametrize("path", ["symbols/faces/happy.ogg", "seasonal/hanukkah/dreydl-nun.ogg",
                                  "military/final-roll-call.ogg"])
def test_tuxpaint_spoken_or_unknown_effects_are_excluded(path):
    assert tuxpaint_caption(path, "Happy!") is None


def test_klettres_and_language_suffixes():
    assert klettres_caption("cs/alpha/a.ogg").text == "a person saying a letter in Czech"
    assert klettres_caption("pt_BR/syllab/ba.ogg").text == "a person saying a syllable in Portuguese"
    assert split_language_suffix("apple_red") == ("apple_red", None)
    assert split_language_suffix("7_en_GB") == ("7", "en_GB")
    assert join_captions(["a dog barking", "rain falling"]) == "a dog barking and rain falling"
    assert join_captions(["a", "", "a", "b", "c"]) == "a, b and c"


# --------------------------------------------------------------------------- datasets and mixing


def test_mix_clips_reaches_the_requested_snr():
    t = torch.arange(RATE) / RATE
    a = 0.5 * torch.sin(2 * math.pi * 440 * t)[None]
    b = 0.2 * torch.sin(2 * math.pi * 1000 * t)[None]  # orthogonal to a over whole periods
    for snr_db in (-5.0, 0.0, 3.0, 5.0):
        mixed = mix_clips(a, b, snr_db)
        scale = float((mixed * a).sum() / (a * a).sum())  # the peak limiter may scale both parts
        residual = mixed - scale * a
        measured = 10 * math.log10(float((scale * a).pow(2).sum() / residual.pow(2).sum()))
        assert measured == pytest.approx(snr_db, abs=0.01)
        assert float(mixed.abs().max()) <= 0.99 + 1e-6
    assert torch.equal(mix_clips(a, torch.zeros_like(a), 0.0), a)


def make_corpus(tmp_path: Path) -> Path:
    write(tmp_path / "long.wav", np.linspace(-0.5, 0.5, 3 * RATE, dtype=np.float32))
    write(tmp_path / "short.wav", tone(0.25))
    write(tmp_path / "other_rate.wav", tone(1.0, rate=8000), rate=8000)
    entries = [entry("long.wav", duration=3.0, caption="a dog barking"),
               entry("short.wav", duration=0.25, caption="rain falling"),
               ManifestEntry("other_rate.wav", 1.0, 8000, "synthetic", "a hum", "train", "other_rate")]
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, entries)
    return manifest


def test_segment_dataset_crops_pads_and_resamples(tmp_path):
    manifest = make_corpus(tmp_path)
    dataset = AudioSegmentDataset(manifest, "train", segment_seconds=0.5, sample_rate=RATE)
    assert len(dataset) == 3
    for index in range(3):
        item = dataset[index]
        assert item["audio"].shape == (1, RATE // 2) and item["audio"].dtype == torch.float32
    short = dataset[1]
    assert short["num_samples"] == RATE // 4 and torch.all(short["audio"][:, RATE // 4:] == 0)
    fixed = AudioSegmentDataset(manifest, "train", segment_seconds=0.5, crop="start")
    expected = torch.from_numpy(np.linspace(-0.5, 0.5, 3 * RATE, dtype=np.float32)[: RATE // 2])
    assert torch.allclose(fixed[0]["audio"][0], expected, atol=1e-4)  # 16-bit file
    assert torch.equal(fixed[0]["audio"], fixed[0]["audio"])  # deterministic crop: same every call
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert batch["audio"].shape == (2, 1, RATE // 2) and batch["caption"] == ["a dog barking", "rain falling"]


def test_mixing_dataset_joins_captions_and_can_be_switched_off(tmp_path):
    base = AudioSegmentDataset(make_corpus(tmp_path), "train", segment_seconds=0.5, crop="start")
    mixing = MixingDataset(base, probability=1.0)
    torch.manual_seed(0)
    item = mixing[0]
    assert item["audio"].shape == (1, RATE // 2)
    assert " and " in item["caption"] and "a dog barking" in item["caption"]
    mixing.enabled = False
    assert mixing[0]["caption"] == "a dog barking"
    with pytest.raises(ValueError):
        MixingDataset(base, probability=1.5)
