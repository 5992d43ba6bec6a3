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
    references = []
    for name in ("speech_warzone2100_tut1.flac", "river_0ad.flac", "fire_0ad.flac"):
        wav, rate = load_audio(EXAMPLES / name)
        references.append(gen.codec.decode(gen.codec.encode(wav, rate))[0, 0])  # as the report: codec renderings
    references = embedder.embed(references, gen.sample_rate)
    # Speech against a fire (the river reference is there as a third, noise-like distractor). Measured at
    # shipping: 8 of 8 clips nearest to their own kind with seeds 0-3 (versions 2 and 3; version 1: 7 of 8);
    # chance is 8 / 3.
    clips = [gen.generate([caption] * 4, duration=3.0, cfg_coef=3.0, seed=0)[:, 0]
             for caption in ("a person speaking English", "a fire crackling")]
    queries = embedder.embed(list(torch.cat(clips)), gen.sample_rate)
    hits = round(8 * retrieval_rate(queries, [0] * 4 + [2] * 4, references, [0, 1, 2]))
    assert hits >= 5, f"only {hits} of 8 generated clips were nearest to their own kind of sound"


def test_demo_serves_the_shipped_models():
    from demo import load_models

    models = load_models(device="cpu")
    assert models.generator_trained and models.codec_trained and "untrained" not in models.describe()
