"""The shipped text-to-audio model: it loads offline with the shipped codec, generates the asked
duration reproducibly, and what it generates for a caption sounds more like that kind of sound than
like a very different one (aiSFX embeddings, against real recordings committed with the demo and
never trained on). The floor is loose: it catches a broken model or decode path, not noise."""

from pathlib import Path

import pytest
import torch

from generation import AudioGen
from vocoder import load_audio

EXAMPLES = Path(__file__).parents[1] / "demo" / "examples"
FIXTURES = Path(__file__).parent / "fixtures"


def rendered_references(gen, paths):
    """Mono recordings at the model's rate as its codec renders them, as the report's references are."""
    from recipes.evaluate_generation import resynthesize

    references = []
    for path in paths:
        wav, rate = load_audio(path)
        assert rate == gen.sample_rate and wav.shape[0] == 1, path
        references.append(resynthesize(gen, wav[0]))
    return references


@pytest.fixture(scope="module")
def gen():
    return AudioGen.from_pretrained()


def test_shipped_audiogen_loads_offline_with_the_shipped_codec(gen):
    assert gen.lm.config.num_codebooks == gen.codec.num_codebooks and gen.sample_rate == 16_000
    assert not gen.lm.training


def test_shipped_audiogen_generates_the_asked_duration_reproducibly(gen):
    first = gen.generate(["a snare drum hit"], duration=1.0, seed=7)
    assert first.shape == (1, 1, gen.sample_rate) and torch.isfinite(first).all() and first.abs().max() > 0.01
    assert torch.equal(first, gen.generate(["a snare drum hit"], duration=1.0, seed=7))


def test_shipped_audiogen_sounds_like_its_caption(gen):
    pytest.importorskip("aisfx", reason="pip install --no-deps aisfx")
    from recipes.sound_embedding import SoundEmbedder, retrieval_rate

    embedder = SoundEmbedder()
    paths = [EXAMPLES / name for name in ("speech_warzone2100_tut1.flac", "river_0ad.flac", "fire_0ad.flac")]
    references = embedder.embed(rendered_references(gen, paths), gen.sample_rate)
    # Speech against a fire (the river reference is there as a third, noise-like distractor). Measured at
    # shipping: 8 of 8 clips nearest to their own kind with seeds 0-3 (versions 2 and 3; version 1: 7 of 8);
    # chance is 8 / 3.
    clips = [gen.generate([caption] * 4, duration=3.0, cfg_coef=3.0, seed=0)[:, 0]
             for caption in ("a person speaking English", "a fire crackling")]
    queries = embedder.embed(list(torch.cat(clips)), gen.sample_rate)
    hits = round(8 * retrieval_rate(queries, [0] * 4 + [2] * 4, references, [0, 1, 2]))
    assert hits >= 5, f"only {hits} of 8 generated clips were nearest to their own kind of sound"


def test_shipped_audiogen_sounds_like_everyday_classes(gen):
    pytest.importorskip("aisfx", reason="pip install --no-deps aisfx")
    from recipes.evaluate_generation import CLASS_PROMPTS
    from recipes.sound_embedding import SoundEmbedder, retrieval_rate

    # One recording per class from the evaluation-only sources (tests/fixtures/README.md), as the codec renders it.
    fixtures = {"chirping_birds": "birds_wesnoth_birds1.flac", "crackling_fire": "fire_wesnoth_campfire.flac",
                "laughing": "laugh_wesnoth_dwarf.flac", "footsteps": "footsteps_freedink_stairs.flac"}
    embedder = SoundEmbedder()
    references = embedder.embed(rendered_references(gen, [FIXTURES / name for name in fixtures.values()]),
                                gen.sample_rate)
    clips = [gen.generate([CLASS_PROMPTS[name]] * 4, duration=3.0, cfg_coef=3.0, seed=0)[:, 0] for name in fixtures]
    queries = embedder.embed(list(torch.cat(clips)), gen.sample_rate)
    labels = [label for label in range(len(fixtures)) for _ in range(4)]
    per_class = [round(4 * retrieval_rate(queries[4 * i:4 * i + 4], labels[4 * i:4 * i + 4], references, [0, 1, 2, 3]))
                 for i in range(len(fixtures))]
    # Measured at shipping (version 5, one thread): 4, 4, 2 and 0 of 4 (seed 1: 3, 3, 3, 1);
    # version 4: 4, 4, 4, 0; chance 4 of 16.
    assert sum(per_class) >= 8 and min(per_class[:2]) >= 3, dict(zip(fixtures, per_class))


def test_shipped_vocabulary_is_what_the_lm_trained_on(gen):
    from demo.app import EXAMPLE_PROMPTS
    from recipes.coverage import TARGET_CLASSES, caption_classes
    from recipes.evaluate_generation import read_captions
    from recipes.sources import EVALUATION_ONLY_SOURCES, RESERVED_PACKAGES

    vocabulary = gen.known_sounds()
    assert vocabulary.counted == "recordings" and vocabulary.splits == ("train",) and len(vocabulary.sources) == 31
    assert {"gcompris-qt-data", "openttd-opensfx", "fluidsynth-gm", "qabcs-data"} <= set(vocabulary.sources)
    assert "flight-of-the-amazon-queen" not in vocabulary.sources  # the codec's extra speech, not the LM's
    assert not set(vocabulary.sources) & {*EVALUATION_ONLY_SOURCES, *RESERVED_PACKAGES}
    assert sum(vocabulary.captions.values()) > 12_000 and len(vocabulary.captions) > 400
    # The report's captions and the demo's examples are captions it learned from several recordings.
    assert all(vocabulary.captions.get(caption, 0) >= 5 for caption in [*read_captions(), *EXAMPLE_PROMPTS])
    # Class counts are its captions' under the class rules (one caption per recording).
    expected = dict.fromkeys(TARGET_CLASSES, 0)
    for caption, count in vocabulary.captions.items():
        for name in caption_classes(caption):
            expected[name] += count
    assert vocabulary.classes == expected


def test_nearest_sounds_finds_a_paraphrase_and_flags_unrelated_prompts(gen):
    near = gen.nearest_sounds("a sword fight")
    assert near.sounds[0].caption == "swords clashing" and not near.far and len(near.sounds) == 5
    # Measured at 0.54 and 0.59, below the 0.65 threshold: no baby or spacecraft was learned.
    for prompt in ("a baby crying", "a spaceship engine"):
        assert gen.nearest_sounds(prompt).far, prompt
    # The first prompt a new user typed: learned since version 5 (8 training recordings).
    assert gen.nearest_sounds("a dog barking").sounds[0].caption == "a dog barking"


def test_demo_shows_the_nearest_trained_sounds(gen, tmp_path):
    from demo import DemoHandlers, DemoLimits, DemoModels, Workspace

    handlers = DemoHandlers(DemoModels(gen, gen.codec, "shipped model", "shipped model", True, True), DemoLimits(),
                            Workspace(tmp_path))
    assert "*a fire crackling* (0.8" in handlers.known_sounds_note("a campfire crackling")
    assert "far from anything the model learned" in handlers.known_sounds_note("a baby crying")


def test_demo_serves_the_shipped_models():
    from demo import load_models

    models = load_models(device="cpu")
    assert models.generator_trained and models.codec_trained and "untrained" not in models.describe()
