"""The real MiniLM text conditioner (packaged offline) end to end, and the T5 loader's error."""

from dataclasses import replace

import pytest
import torch

from codec import Codec
from generation import AudioGen, AudioLanguageModel, ConditionerError, build_conditioner

from presets import TINY_CODEC, TINY_LM


@pytest.fixture(scope="module")
def minilm():
    return build_conditioner("minilm")


def test_minilm_states_mask_and_null_condition(minilm):
    condition = minilm(["a dog barking", "", "heavy rain on a tin roof with thunder"])
    assert condition.states.shape[0] == 3 and condition.states.shape[-1] == 384
    lengths = condition.mask.sum(dim=1).tolist()
    assert lengths[1] == 1 and lengths[0] < lengths[2]  # "" is the one-token null condition
    assert torch.all(condition.states[1] == 0)
    assert torch.all(condition.states[~condition.mask] == 0)
    assert not any(p.requires_grad for p in minilm.parameters())


def test_generation_with_minilm(minilm):
    torch.manual_seed(0)
    lm = AudioLanguageModel(replace(TINY_LM, conditioner="minilm", text_dim=384))
    gen = AudioGen(lm, Codec(TINY_CODEC), minilm)
    first = gen.generate_tokens(["a dog barking", "birdsong"], duration=0.2, seed=0)
    assert torch.equal(first, gen.generate_tokens(["a dog barking", "birdsong"], duration=0.2, seed=0))


def test_unavailable_t5_is_a_clear_error():
    with pytest.raises(ConditionerError, match="cannot load T5 encoder"):
        build_conditioner("t5:/not/a valid repo")
    with pytest.raises(ConditionerError, match="unknown text conditioner"):
        build_conditioner("bert")
