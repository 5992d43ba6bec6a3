"""What a text-to-audio model knows: the everyday target classes, corpus coverage against them, and the
training vocabulary a model folder carries (written by token extraction, exported beside the LM, loaded
by AudioGen, looked up by text similarity). The shipped model's side is in test_pretrained_audiogen.py."""

import json
from pathlib import Path

import pytest

from codec import Codec, SpectralCodecConfig
from generation import AudioGen
from generation.vocabulary import VOCABULARY_FILE, Vocabulary, read_vocabulary, write_vocabulary
from recipes import coverage
from recipes.config import load_recipe_config
from recipes.coverage import (CLASS_RULES, ESC50_CLASSES, TARGET_CLASSES, caption_classes, class_coverage,
                              read_class_rules, token_vocabulary, vocabulary_from_entries, vocabulary_from_token_rows)
from recipes.data import ManifestEntry, read_manifest, write_manifest
from recipes.extract_tokens import main as extract_tokens
from recipes.lm_module import LanguageModelModule
from vocoder.checkpoint import CheckpointError


def entry(recording: str, caption: str, source: str = "a", split: str = "train", seconds: float = 6.0) -> ManifestEntry:
    return ManifestEntry(f"{recording}.wav", seconds, 16_000, source, caption, split, recording)


# ------------------------------------------------------------------------------- target classes

def test_the_target_vocabulary_is_esc50_plus_speech_and_music():
    assert len(ESC50_CLASSES) == 50 and len(TARGET_CLASSES) == 52
    assert ESC50_CLASSES[:3] == ("dog", "rooster", "pig") and ESC50_CLASSES[-1] == "hand_saw"
    assert {"speech", "music"} <= set(TARGET_CLASSES) and not {"speech", "music"} & set(ESC50_CLASSES)
    assert {rule.caption for rule in CLASS_RULES} <= set(TARGET_CLASSES) | {coverage.NO_CLASS}


@pytest.mark.parametrize("caption, classes", [
    ("a dog barking and rain falling", ["dog", "rain"]),
    ("a person speaking French, a fire crackling and an acoustic guitar strumming a chord",
     ["speech", "crackling_fire", "music"]),
    ("a person laughing", ["laughing"]),  # first match wins: not speech
    ("a person saying a letter in Malayalam", ["speech"]),
    ("a night ambience with crickets", ["crickets"]),
    ("a jet engine roaring", ["airplane"]),  # not engine
    ("the sound of civ dog move", []),  # an exception rule ("-") before the dog rule
    ("a siege engine firing", []),
    ("a sling being whirled and released", []),  # a caption with "and" in it is not two sounds
    ("swords clashing", []),
])
def test_captions_map_to_target_classes(caption, classes):
    assert caption_classes(caption) == classes


def test_class_rules_must_name_target_classes(tmp_path):
    table = tmp_path / "classes.tsv"
    table.write_text("\\bdog\tdog\n\\bunicorn\tunicorn\n")
    with pytest.raises(ValueError, match="unicorn"):
        read_class_rules(table, TARGET_CLASSES)


# ------------------------------------------------------------------------------- coverage

def test_coverage_counts_distinct_recordings_minutes_and_sources():
    entries = [entry(f"d{i}", "a dog barking", "farm" if i < 3 else "city") for i in range(5)]
    entries += [entry("d0", "a dog barking", "farm")]  # a second segment of one recording counts once
    entries += [entry(f"r{i}", "rain falling", "farm") for i in range(9)]  # many, but from one source
    entries += [entry("m0", "a cow mooing and rain falling", "farm")]
    rows = {row.name: row for row in class_coverage(entries)}
    assert rows["dog"].recordings == 5 and rows["dog"].sources == {"farm": 3, "city": 2}
    assert rows["dog"].minutes == pytest.approx(6 * 6 / 60) and rows["dog"].covered
    assert rows["rain"].recordings == 10 and not rows["rain"].covered
    assert rows["cow"].recordings == 1 and rows["rain"].captions == {"rain falling": 9, "a cow mooing and rain falling": 1}
    assert coverage.covered(list(rows.values())) == ["dog"]


def test_coverage_command_writes_the_report(tmp_path):
    entries = [entry(f"f{i}", "a fire crackling", f"s{i % 2}") for i in range(6)]
    entries += [entry("x0", "a person speaking English", "left-out"), entry("v0", "a fire crackling", "s0", "valid")]
    write_manifest(tmp_path / "manifest.jsonl", entries)
    out = tmp_path / "reports" / "coverage.md"
    vocabulary_path = tmp_path / VOCABULARY_FILE
    assert coverage.main(["--manifest", str(tmp_path / "manifest.jsonl"), "--exclude-sources", "left-out",
                          "--out", str(out), "--vocabulary", str(vocabulary_path)]) == 0
    report = out.read_text()
    assert "**Coverage: 1 of 50 ESC-50 classes**" in report and "| crackling_fire | 7 |" in report
    vocabulary = read_vocabulary(vocabulary_path)
    assert vocabulary.captions == {"a fire crackling": 6} and vocabulary.sources == ("s0", "s1")
    assert coverage.main(["--manifest", str(tmp_path / "manifest.jsonl"), "--sources", "nowhere"]) == 2


# ------------------------------------------------------------------------------- the vocabulary file

def test_vocabulary_counts_the_train_split_recordings():
    entries = [entry("a", "rain falling"), entry("a", "rain falling"), entry("b", "rain falling"),
               entry("c", "a dog barking"), entry("d", "a dog barking", split="valid")]
    vocabulary = vocabulary_from_entries(entries)
    assert vocabulary.captions == {"rain falling": 2, "a dog barking": 1}
    assert vocabulary.classes["rain"] == 2 and vocabulary.classes["dog"] == 1 and vocabulary.classes["cat"] == 0
    assert list(vocabulary.classes) == list(TARGET_CLASSES)


def test_vocabulary_file_round_trips_and_is_validated(tmp_path):
    path = tmp_path / VOCABULARY_FILE
    assert read_vocabulary(path) is None  # no file: an unknown vocabulary, not an error
    vocabulary = Vocabulary({"rain falling": 3, "a dog barking": 7}, {"rain": 3}, sources=("x",))
    write_vocabulary(path, vocabulary)
    loaded = read_vocabulary(path)
    assert loaded == vocabulary and list(loaded.captions) == ["a dog barking", "rain falling"]
    good = json.loads(path.read_text())
    for bad in ([good], {**good, "format": "pickle"}, {**good, "version": 2}, {**good, "captions": ["rain"]},
                {**good, "captions": {"rain": -1}}, {**good, "captions": {"rain": 1.5}}, {**good, "classes": None},
                {**good, "counted": "guesses"}, {k: v for k, v in good.items() if k != "sources"}):
        path.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match="not a vocabulary file"):
            read_vocabulary(path)
    path.write_bytes(b"\x80\x04\x95 not json")
    with pytest.raises(CheckpointError):
        read_vocabulary(path)


def test_a_token_folder_without_a_vocabulary_gives_its_index_captions(tmp_path):
    rows = [{"caption": c, "split": s} for c, s in [
        ("rain falling", "train"), ("rain falling", "train"), ("a dog barking", "train"),
        ("a sling being whirled and released", "train"),  # "and" inside one caption: kept
        ("rain falling and a dog barking", "train"),  # a mixed copy: left out
        ("a cow mooing", "valid")]]
    vocabulary = vocabulary_from_token_rows(rows)
    assert vocabulary.captions == {"rain falling": 2, "a dog barking": 1, "a sling being whirled and released": 1}
    assert vocabulary.counted == "clips" and vocabulary.classes["rain"] == 2 and vocabulary.classes["cow"] == 0


@pytest.fixture(scope="module")
def tokens(tiny_corpus, tmp_path_factory) -> Path:
    """Tokens of the tiny corpus by a random tiny codec, as the recipe extracts them (mixed copies too)."""
    root = tmp_path_factory.mktemp("tokens")
    Codec(SpectralCodecConfig.tiny()).save_pretrained(root / "codec")
    assert extract_tokens(["--codec", str(root / "codec"), "--manifest", str(tiny_corpus), "--out", str(root / "tokens"),
                           "--max-seconds", "0.5", "--mix-copies", "1", "--accelerator", "cpu"]) == 0
    return root


def test_token_extraction_records_the_manifests_train_vocabulary(tokens, tiny_corpus):
    recorded = read_vocabulary(tokens / "tokens" / VOCABULARY_FILE)
    train = read_manifest(tiny_corpus, "train")
    assert recorded.captions == {caption: len({e.recording_id for e in train if e.caption == caption})
                                 for caption in {e.caption for e in train}}
    assert recorded.counted == "recordings" and recorded.sources == ("synthetic",)
    assert token_vocabulary(tokens / "tokens") == recorded


def test_the_lm_export_carries_the_vocabulary_and_audiogen_loads_it(tokens, tmp_path):
    codec = Codec.from_pretrained(tokens / "codec")
    config = load_recipe_config("lm", smoke=True, overrides=[
        f"data.tokens={tokens / 'tokens'}", f"data.codec={tokens / 'codec'}",
        f"model.codebook_size={codec.codebook_size}", f"model.num_codebooks={codec.num_codebooks}"])
    LanguageModelModule(config).export(tmp_path / "best")
    gen = AudioGen.from_pretrained(tmp_path / "best")
    assert gen.known_sounds() == read_vocabulary(tokens / "tokens" / VOCABULARY_FILE)
    (tmp_path / "best" / VOCABULARY_FILE).unlink()
    assert AudioGen.from_pretrained(tmp_path / "best").known_sounds() is None


# ------------------------------------------------------------------------------- nearest sounds

def test_nearest_sounds_by_the_models_text_encoder():
    gen = AudioGen.random_init()  # hashed words: shared words make captions similar
    with pytest.raises(ValueError, match="unknown"):
        gen.nearest_sounds("rain")
    gen.vocabulary = Vocabulary({"rain falling": 9, "a fire crackling": 7, "swords clashing": 6, "a dog barking": 1})
    near = gen.nearest_sounds("rain falling hard", k=2)
    assert [s.caption for s in near.sounds][0] == "rain falling" and len(near.sounds) == 2 and not near.far
    assert near.sounds[0].recordings == 9 and near.sounds[0].similarity > near.sounds[1].similarity
    far = gen.nearest_sounds("a dog barking", k=5)  # one recording is not a learned sound
    assert far.far and "a dog barking" not in [s.caption for s in far.sounds] and len(far.sounds) == 3
    assert gen.nearest_sounds("a dog barking", min_recordings=1).sounds[0].caption == "a dog barking"
    with pytest.raises(ValueError):
        gen.nearest_sounds("rain", k=0)
