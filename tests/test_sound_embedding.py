"""The evaluation's embedding space (aiSFX) and the scores computed in it."""

import pytest
import torch

from recipes.sound_embedding import frechet_distance, retrieval_rate, wilson_interval


def test_retrieval_rate_on_separable_and_on_swapped_labels():
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    references = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.05 * torch.randn(12, 8), dim=-1)
    labels = [0] * 4 + [1] * 4 + [2] * 4
    assert retrieval_rate(references, labels, references, labels, leave_one_out=True) == 1.0
    assert retrieval_rate(references, [1] * 4 + [2] * 4 + [0] * 4, references, labels) == 0.0
    # a label whose only reference is left out cannot be chosen
    assert retrieval_rate(references[:1], [0], references[[0, 4]], [0, 1], leave_one_out=True) == 0.0


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    torch.manual_seed(0)
    a = torch.randn(200, 4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)


def test_embedder_separates_noise_from_a_tone():
    pytest.importorskip("aisfx", reason="pip install --no-deps aisfx")
    from recipes.sound_embedding import SoundEmbedder

    embedder = SoundEmbedder()
    t = torch.arange(32000) / 16000
    gen = torch.Generator().manual_seed(0)
    clips = [torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 450 * t),
             torch.randn(32000, generator=gen), torch.randn(24000, generator=gen), torch.sin(2 * torch.pi * 440 * t[:800])]
    emb = embedder.embed(clips, 16000)
    assert emb.shape == (5, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(5))
    assert emb[0] @ emb[1] > emb[0] @ emb[2] and emb[2] @ emb[3] > emb[2] @ emb[1]  # short clips are padded


def test_continuation_evaluation_scores_with_and_without_the_caption(tmp_path):
    import numpy as np
    import soundfile as sf

    from codec import Codec
    from generation import AudioGen, AudioLanguageModel
    from recipes.data import ManifestEntry, read_manifest, write_manifest
    from recipes.evaluate_generation import evaluate_continuation

    from presets import TINY_CODEC, TINY_LM

    class MeanSpectrum:
        """A stand-in embedder: the clip's average magnitude spectrum in 16 bands."""

        def __init__(self):
            self.sizes = []

        def embed(self, clips, sample_rate):
            self.sizes.append(len(clips))
            return torch.stack([torch.fft.rfft(c[:4000].float(), n=4000).abs()[:1984].view(16, -1).mean(-1)
                                for c in clips])

    entries = []
    clips = [("a person speaking English", 4.0)] * 3 + [("a door slamming", 4.0)] * 2 + [
        ("a crash cymbal", 4.0), ("a ride cymbal", 2.6), ("a closed hi-hat", 2.4)]
    for i, (caption, seconds) in enumerate(clips):
        tone = 0.2 * np.sin(2 * np.pi * 200 * (i + 1) * np.arange(int(seconds * 16_000)) / 16_000)
        sf.write(tmp_path / f"c{i}.wav", tone.astype(np.float32), 16_000)
        entries.append(ManifestEntry(f"c{i}.wav", seconds, 16_000, "synthetic", caption, "valid", f"rec{i}"))
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, entries)
    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    embedder = MeanSpectrum()
    results = evaluate_continuation(gen, embedder, manifest, read_manifest(manifest), per_kind=3, samples=2)
    assert set(results) == {"speech", "effects", "drums"}
    # drum hits are short: a drum clip needs 0.5 s after its 2 s prompt (the 2.4 s one is left out)
    assert results["speech"]["clips"] == 3 and results["effects"]["clips"] == 2 and results["drums"]["clips"] == 2
    for scores in results.values():
        assert scores["chance"] == 1 / scores["clips"] and scores["samples_per_clip"] == 2
        assert {"continuation", "continuation_with_caption", "prompt_alone"} <= set(scores)
        assert all(0.0 <= scores[k] <= 1.0 for k in ("continuation", "continuation_with_caption", "prompt_alone"))
    # per kind: the rests, the prompts, then both conditions' continuations, two per clip
    assert embedder.sizes == [n for k in ("speech", "effects", "drums") for n in [results[k]["clips"]] * 2
                              + [2 * results[k]["clips"]] * 2]


def test_wilson_interval_widens_as_the_clips_get_few():
    assert wilson_interval(0.5, 4) == pytest.approx((0.150, 0.850), abs=1e-3)
    low, high = wilson_interval(0.0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    narrow = wilson_interval(0.5, 104)
    assert 0.40 < narrow[0] < 0.5 < narrow[1] < 0.60
    with pytest.raises(ValueError):
        wilson_interval(0.5, 0)


def test_class_evaluation_scores_learned_classes_against_unheard_sources(tmp_path):
    import numpy as np
    import soundfile as sf

    from codec import Codec
    from generation import AudioGen, AudioLanguageModel
    from generation.vocabulary import Vocabulary
    from recipes.data import ManifestEntry, read_manifest, write_manifest
    from recipes.evaluate_generation import class_references, class_section, evaluate_classes

    from presets import TINY_CODEC, TINY_LM

    class MeanSpectrum:
        def embed(self, clips, sample_rate):
            return torch.stack([torch.fft.rfft(c[:4000].float(), n=4000).abs()[:1984].view(16, -1).mean(-1)
                                for c in clips])

    recordings = [("a dog barking", "heldout"), ("dogs barking loudly", "heldout"), ("rain falling", "heldout"),
                  ("rain falling", "heldout"), ("a dog barking and rain falling", "heldout"),  # a mix: no reference
                  ("a cow mooing", "heldout"), ("a cow mooing", "heldout"),  # not learned: not scored
                  ("a dog barking", "trained")]  # a source the model heard: never a reference
    entries = []
    for i, (caption, source) in enumerate(recordings):
        tone = 0.2 * np.sin(2 * np.pi * 300 * (i + 1) * np.arange(32_000) / 16_000)
        sf.write(tmp_path / f"c{i}.wav", tone.astype(np.float32), 16_000)
        entries.append(ManifestEntry(f"c{i}.wav", 2.0, 16_000, source, caption, "train", f"rec{i}"))
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, entries)
    entries = read_manifest(manifest)
    from recipes.coverage import CLASS_PROMPTS, TARGET_CLASSES

    assert list(CLASS_PROMPTS) == list(TARGET_CLASSES) and CLASS_PROMPTS["dog"] == "a dog barking"
    references = class_references(entries, ["heldout"], ["dog", "rain", "cow", "cat"], max_real=8)
    assert {name: sorted(e.recording_id for e in items) for name, items in references.items()} == {
        "dog": ["rec0", "rec1"], "rain": ["rec2", "rec3"], "cow": ["rec5", "rec6"]}  # cat: none

    torch.manual_seed(0)
    gen = AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))
    gen.vocabulary = Vocabulary({"a dog barking": 6, "rain falling": 5, "a cow mooing": 1},
                                {"dog": 6, "rain": 5, "cow": 1}, sources=("trained",))
    with pytest.raises(ValueError, match="trained on trained"):
        evaluate_classes(gen, MeanSpectrum(), manifest, entries, ["trained"], 2, 8, tmp_path)
    with torch.inference_mode():
        results = evaluate_classes(gen, MeanSpectrum(), manifest, entries, ["heldout"], 2, 8, tmp_path)
    assert results["learned_classes"] == ["dog", "rain"] and results["classes"] == ["dog", "rain"]
    assert results["chance"] == 0.5 and results["references"] == {"dog": 2, "rain": 2}
    assert results["prompts"] == {"dog": "a dog barking", "rain": "rain falling"}
    for cfg in ("1", "3"):
        assert 0.0 <= results[f"retrieval_cfg{cfg}"] <= 1.0 and set(results[f"per_class_cfg{cfg}"]) == {"dog", "rain"}
    assert (tmp_path / "audio" / "classes" / "dog.wav").is_file()
    table = "\n".join(class_section(results))
    assert "| dog | a dog barking | 2 |" in table and "heldout" in table
    with torch.inference_mode():  # named classes: two models compared on one set, learned or not
        named = evaluate_classes(gen, MeanSpectrum(), manifest, entries, ["heldout"], 1, 8, tmp_path, ["dog", "cow"])
    assert named["classes"] == ["dog", "cow"] and "cow: not learned by this model" in "\n".join(class_section(named))
    with pytest.raises(ValueError, match="not ESC-50 classes"):
        evaluate_classes(gen, MeanSpectrum(), manifest, entries, ["heldout"], 1, 8, tmp_path, ["speech"])
