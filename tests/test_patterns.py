"""Codebook interleaving patterns are exact, invertible mappings (property-based)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from generation.patterns import PATTERNS, CodebookPattern

SPECIAL = 1000


@st.composite
def codes_and_pattern(draw):
    name = draw(st.sampled_from(PATTERNS))
    batch, codebooks, frames = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    codes = torch.randint(0, SPECIAL, (batch, codebooks, frames), generator=torch.Generator().manual_seed(seed))
    return CodebookPattern(name, codebooks), codes


@settings(max_examples=60, deadline=None)
@given(codes_and_pattern())
def test_revert_inverts_build(case):
    pattern, codes = case
    seq, valid = pattern.build(codes, SPECIAL)
    assert seq.shape[-1] == pattern.sequence_length(codes.shape[-1])
    assert torch.equal(pattern.revert(seq, codes.shape[-1]), codes)


@settings(max_examples=60, deadline=None)
@given(codes_and_pattern())
def test_mask_marks_exactly_the_codes(case):
    pattern, codes = case
    seq, valid = pattern.build(codes, SPECIAL)
    assert valid.shape == seq.shape[1:]
    assert int(valid.sum()) == codes.shape[1] * codes.shape[2]  # every code once, nothing else
    assert (seq[:, ~valid] == SPECIAL).all() and (seq[:, valid] != SPECIAL).all()


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(1, 6), st.integers(0, 40))
def test_max_frames_is_the_inverse_of_sequence_length(name, codebooks, steps):
    pattern = CodebookPattern(name, codebooks)
    frames = pattern.max_frames(steps)
    assert pattern.sequence_length(frames) <= steps
    assert pattern.sequence_length(frames + 1) > steps


def test_delay_layout():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    seq, valid = CodebookPattern("delay", 3).build(codes, 0)
    assert seq.tolist() == [[[1, 2, 3, 0, 0], [0, 4, 5, 6, 0], [0, 0, 7, 8, 9]]]
    assert valid.tolist() == [[True, True, True, False, False], [False, True, True, True, False],
                              [False, False, True, True, True]]


def test_flatten_and_parallel_layouts():
    codes = torch.tensor([[[1, 2], [3, 4]]])
    assert CodebookPattern("flatten", 2).build(codes, 0)[0].tolist() == [[[1, 0, 2, 0], [0, 3, 0, 4]]]
    assert torch.equal(CodebookPattern("parallel", 2).build(codes, 0)[0], codes)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown codebook pattern"):
        CodebookPattern("spiral", 4)
    with pytest.raises(ValueError, match=r"\[B, 4, T\]"):
        CodebookPattern("delay", 4).build(torch.zeros(1, 3, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="fewer than"):
        CodebookPattern("delay", 2).revert(torch.zeros(1, 2, 3, dtype=torch.long), 5)
