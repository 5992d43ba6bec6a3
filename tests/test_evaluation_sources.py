"""The evaluation-only sources: everyday recordings from packages no training source shares, captioned by
``caption_rules/evaluation.tsv``, left out of ``--packages all``, and refused by every training recipe."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.captions import evaluation_caption
from recipes.coverage import caption_classes
from recipes.data import AudioSegmentDataset, ManifestError, read_manifest, refuse_untrainable
from recipes.prepare_data import build_corpus, chosen_packages, main as prepare_main
from recipes.sources import (EVALUATION_ONLY_SOURCES, NOT_IN_ALL, PACKAGES, is_evaluation_only, is_reserved,
                             never_train_reason)
from tests.conftest import make_corpus

# What the models trained on (README, shared/DATA.md): an evaluation-only source must be none of them.
TRAINING_SOURCES = {
    "0ad-data", "btanks-data", "bucklespring-data", "fluidsynth-gm", "frozen-bubble-data", "gcompris-qt-data",
    "hydrogen-drumkits", "hydrogen-drumkits-effects", "klettres-data", "lincity-ng-data", "lmms-common",
    "megaglest-data", "minetest-data", "openttd-opensfx", "simutrans-pak64", "sonic-pi-samples", "supertux-data",
    "supertuxkart-data", "tuxmath-data", "tuxpaint-stamps-default", "ufoai-sound", "warzone2100-data",
    "widelands-data", "wordwarvi-sound", "flight-of-the-amazon-queen", "fillets-ng-data-cs",
    "asterisk-core-sounds-fr-g722", "asterisk-core-sounds-ru-g722"}


def tone(fmt: str = "OGG", seconds: float = 0.5, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format=fmt)
    return buffer.getvalue()


EVALUATION = {  # path under usr/share -> (caption, its classes); None: left out
    "games/lugaru/Sounds/FootStepSnow2.ogg": ("a footstep on snow", ["footsteps"]),
    "games/lugaru/Sounds/Fire.ogg": ("a fire crackling", ["crackling_fire"]),
    "games/lugaru/Sounds/Wind.ogg": ("wind blowing", ["wind"]),
    "games/lugaru/Sounds/Bark2.ogg": ("a wolf barking", []),  # the game's wolves: no class, never "dog"
    "games/lugaru/Sounds/BarkGrowl.ogg": ("a wolf growling", []),
    "games/lugaru/Sounds/FireStart.ogg": None,
    "games/lugaru/Sounds/Music1Snow.ogg": None,
    "games/wesnoth/1.16/data/core/sounds/ambient/birds2.ogg": ("birds chirping", ["chirping_birds"]),
    "games/wesnoth/1.16/data/core/sounds/ambient/campfire.ogg": ("a campfire crackling", ["crackling_fire"]),
    "games/wesnoth/1.16/data/core/sounds/dwarf-laugh.wav": ("a person laughing heartily", ["laughing"]),
    "games/wesnoth/1.16/data/campaigns/World_Conquest/sounds/witches-laugh.wav":
        ("a witch cackling with laughter", ["laughing"]),
    "games/wesnoth/1.16/data/core/sounds/fire.wav": None,  # a magic attack
    "games/wesnoth/1.16/data/core/sounds/wolf-growl-1.ogg": None,
    "freedroidrpg/data/sound/effects/Glass_Break.ogg": ("glass breaking", ["glass_breaking"]),
    "games/dink/dink/Sound/stairs.wav": ("footsteps on stairs", ["footsteps"]),
    "games/flightgear/Sounds/rotor-2blade.wav": ("a two-blade helicopter rotor chopping", ["helicopter"]),
    "games/flightgear/Sounds/engine-prop.wav": ("a propeller plane's engine droning", ["airplane"]),
    "games/flightgear/Aircraft/c172p/Sounds/engine-idle.wav": ("a piston engine idling", ["engine"]),
    "games/flightgear/Sounds/thunder.wav": ("a thunderclap rolling into a rumble", ["thunderstorm"]),
    "games/flightgear/Sounds/rain-windshield.wav": ("rain drumming on a windshield", ["rain"]),
    "games/flightgear/Sounds/wasp.wav": None,  # a radial engine named Wasp, not an insect
    "games/flightgear/Sounds/wind-8khz.wav": None,  # wind.wav at a lower rate
}


@pytest.mark.parametrize("path, expected", EVALUATION.items())
def test_evaluation_rules_caption_only_what_they_name(path: str, expected) -> None:
    caption = evaluation_caption(path)
    assert caption == (expected[0] if expected else None)
    if expected:
        assert caption_classes(caption) == expected[1]


def test_evaluation_sources_are_collected_but_never_in_all_and_never_trained_on() -> None:
    assert set(EVALUATION_ONLY_SOURCES) <= set(PACKAGES) and set(EVALUATION_ONLY_SOURCES) <= set(NOT_IN_ALL)
    assert not set(EVALUATION_ONLY_SOURCES) & TRAINING_SOURCES
    assert not any(is_reserved(name) for name in EVALUATION_ONLY_SOURCES)
    everything = chosen_packages(["all"])
    assert not any(is_evaluation_only(name) for name in everything) and "minetest-data" in everything
    assert chosen_packages(["lugaru-data", "wesnoth-1.16-data"]) == ["lugaru-data", "wesnoth-1.16-data"]
    assert chosen_packages(["none"]) == []
    # "all" takes more names after it (each package once), so the rendered GM clips join with one word.
    assert chosen_packages(["all", "fluidsynth-gm", "minetest-data"]) == [*everything, "fluidsynth-gm"]


def test_evaluation_collector_puts_every_recording_in_the_test_split(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    sounds = root / "usr/share/games/lugaru/Sounds"
    sounds.mkdir(parents=True)
    for name in ("FootStepGrass1.ogg", "Fire.ogg", "Wind.ogg", "Growl.ogg", "Alarm.ogg"):
        (sounds / name).write_bytes(tone())
    items = list(PACKAGES["lugaru-data"](root, "lugaru-data"))
    assert [(i.recording_id, i.caption) for i in items] == [
        ("lugaru-data/Alarm.ogg", None), ("lugaru-data/Fire.ogg", "a fire crackling"),
        ("lugaru-data/FootStepGrass1.ogg", "a footstep on grass"), ("lugaru-data/Growl.ogg", "a wolf growling"),
        ("lugaru-data/Wind.ogg", "wind blowing")]
    manifest, summary = build_corpus(items, tmp_path / "corpus", progress=False)
    entries = read_manifest(manifest)
    assert len(entries) == 4 and {e.split for e in entries} == {"test"} and summary.num_skipped == 1


def test_prepare_data_builds_a_named_evaluation_source(tmp_path: Path) -> None:
    unpacked = tmp_path / "cache/unpacked/wesnoth-1.16-data"
    ambient = unpacked / "usr/share/games/wesnoth/1.16/data/core/sounds/ambient"
    ambient.mkdir(parents=True)
    (unpacked / ".complete").touch()
    (ambient / "birds1.ogg").write_bytes(tone())
    (ambient / "wardrums.ogg").write_bytes(tone())
    code = prepare_main(["--out", str(tmp_path / "out"), "--packages", "wesnoth-1.16-data",
                         "--cache-dir", str(tmp_path / "cache")])
    entries = read_manifest(tmp_path / "out/manifest.jsonl")
    assert code == 0 and [(e.caption, e.split, e.source) for e in entries] == [
        ("birds chirping", "test", "wesnoth-1.16-data")]


def mixed_corpus(root: Path, source: str = "lugaru-data", split: str = "train") -> Path:
    """A small corpus with one clip of ``source`` in ``split`` among synthetic training clips."""
    manifest = make_corpus(root)
    lines = manifest.read_text().splitlines()
    lines[0] = lines[0].replace('"source": "synthetic"', f'"source": "{source}"').replace(
        '"recording_id": "rec0"', f'"recording_id": "{source}/Fire.ogg"').replace('"split": "train"', f'"split": "{split}"')
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_reasons_never_to_train() -> None:
    assert "evaluation-only" in never_train_reason("wesnoth-1.16-data")
    assert "reserved" in never_train_reason("asterisk-core-sounds-en-g722")
    assert "reserved" in never_train_reason("scratch")
    assert never_train_reason("scratchpad") is None and never_train_reason("minetest-data") is None


def test_datasets_refuse_evaluation_sources_only_in_training(tmp_path: Path) -> None:
    manifest = mixed_corpus(tmp_path / "corpus")
    with pytest.raises(ManifestError, match="lugaru-data is evaluation-only"):
        AudioSegmentDataset(manifest, "train")
    assert len(AudioSegmentDataset(manifest, "train", exclude=["lugaru-data"])) == 3
    held_out = mixed_corpus(tmp_path / "held_out", split="test")
    assert len(AudioSegmentDataset(held_out, "train")) == 3  # in the test split it is no training data
    with pytest.raises(ManifestError, match="hedgewars-data is reserved"):
        refuse_untrainable(read_manifest(mixed_corpus(tmp_path / "reserved", "hedgewars-data")), "corpus")


def test_codec_recipe_refuses_an_evaluation_source_in_one_line(tmp_path: Path, capsys) -> None:
    from recipes.train import main as train_main

    manifest = mixed_corpus(tmp_path / "corpus", "wesnoth-1.16-data")
    code = train_main(["codec", "--smoke", "--output", str(tmp_path / "run"), "--set", f"data.manifest={manifest}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "wesnoth-1.16-data is evaluation-only" in err[0]
    assert not (tmp_path / "run/checkpoints").exists()


def test_extract_tokens_refuses_an_evaluation_source(tmp_path: Path, capsys, tiny_codec) -> None:
    from recipes.extract_tokens import main as extract_main

    tiny_codec.save_pretrained(tmp_path / "codec")
    manifest = mixed_corpus(tmp_path / "corpus", "flightgear-data-base")
    code = extract_main(["--codec", str(tmp_path / "codec"), "--manifest", str(manifest), "--out", str(tmp_path / "tokens")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "flightgear-data-base is evaluation-only" in err[0]
    assert not (tmp_path / "tokens").exists()


def test_evaluate_generation_skips_classes_without_the_evaluation_corpus(tmp_path: Path, capsys, monkeypatch) -> None:
    import recipes.evaluate_generation as evaluation

    calls = []
    monkeypatch.setattr(evaluation.AudioGen, "from_pretrained", staticmethod(lambda *a, **k: object()))
    monkeypatch.setattr(evaluation, "SoundEmbedder", lambda: None)
    monkeypatch.setattr(evaluation, "measure_speed", lambda gen: {})
    monkeypatch.setattr(evaluation, "evaluate_retrieval", lambda *a, **k: {})
    monkeypatch.setattr(evaluation, "evaluate_continuation", lambda *a, **k: {})
    monkeypatch.setattr(evaluation, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(evaluation, "evaluate_classes", lambda gen, emb, manifest, entries, sources, *a: calls.append(
        (manifest, sorted({e.source for e in entries}), list(sources))) or {})
    main_manifest = make_corpus(tmp_path / "corpus")
    assert evaluation.main(["--manifest", str(main_manifest), "--out", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert not calls and len(err) == 1 and "per-class section skipped" in err[0] and "recipes.prepare_data" in err[0]
    held_out = mixed_corpus(tmp_path / "eval", "lugaru-data", split="test")
    assert evaluation.main(["--manifest", str(main_manifest), "--class-manifest", str(held_out),
                            "--out", str(tmp_path / "report")]) == 0
    assert calls == [(held_out, ["lugaru-data", "synthetic"], list(EVALUATION_ONLY_SOURCES))]
