"""The evaluation's embedding space (aiSFX) and the scores computed in it."""

import pytest
import torch

from recipes.sound_embedding import frechet_distance, retrieval_rate


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
