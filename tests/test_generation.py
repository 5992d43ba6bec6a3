"""Audio language model and AudioGen pipeline on tiny random-weight models."""

import math
import shutil

import pytest
import torch

from codec import Codec
from generation import AudioGen, AudioLanguageModel, SamplingParams, TextCondition
from generation.conditioners import HashedConditioner
from generation.sampling import sample_tokens
from vocoder.checkpoint import CheckpointError

from presets import TINY_CODEC, TINY_LM, tiny_lm

TEXT = ["a dog barking", "rain on a tin roof with distant thunder"]


@pytest.fixture(scope="module")
def gen() -> AudioGen:
    torch.manual_seed(0)
    return AudioGen(AudioLanguageModel(TINY_LM), Codec(TINY_CODEC))


@pytest.fixture(scope="module")
def condition() -> TextCondition:
    return HashedConditioner(32)(TEXT)


# ------------------------------------------------------------------------------------ the model

@pytest.mark.parametrize("pattern, positional", [("delay", "sinusoidal"), ("flatten", "learned")])
def test_cached_step_logits_equal_full_recompute(pattern, positional, condition):
    lm = tiny_lm(pattern=pattern, positional=positional)
    codes = torch.randint(0, 16, (2, 2, 8))
    seq, _ = lm.pattern.build(codes, lm.config.special_token)
    inputs = lm._sequence_inputs(seq)
    full = lm(inputs, condition)
    cache = lm.new_cache(2)
    prefill = lm(inputs[:, :, :5], condition, cache)  # a block after an empty cache, then single steps
    steps = [lm(inputs[:, :, i:i + 1], condition, cache) for i in range(5, inputs.shape[-1])]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=2), full, rtol=1e-4, atol=1e-5)


def test_cached_block_after_cached_steps_is_causal(condition):
    lm = tiny_lm()
    inputs = torch.randint(0, 17, (2, 2, 10))
    full = lm(inputs, condition)
    cache = lm.new_cache(2)
    parts = [lm(inputs[:, :, :3], condition, cache), lm(inputs[:, :, 3:7], condition, cache), lm(inputs[:, :, 7:], condition, cache)]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=1e-4, atol=1e-5)


def test_padded_text_positions_are_irrelevant(condition):
    lm = tiny_lm()
    inputs = torch.randint(0, 17, (2, 2, 6))
    padded = TextCondition(
        torch.cat([condition.states, 100 * torch.randn(2, 5, 32)], dim=1),  # garbage behind the mask
        torch.cat([condition.mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1),
    )
    torch.testing.assert_close(lm(inputs, padded), lm(inputs, condition))
    unmasked = TextCondition(padded.states, torch.ones_like(padded.mask))
    assert not torch.allclose(lm(inputs, unmasked), lm(inputs, condition))


def test_training_steps_lower_the_cross_entropy(condition):
    lm = tiny_lm().train()
    codes = torch.randint(0, 16, (2, 2, 12), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = lm.loss(codes, condition.states, condition.mask)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        losses.append(loss.total.item())
    assert loss.per_codebook.shape == (2,)
    assert losses[0] == pytest.approx(math.log(16), rel=0.1)  # uniform at initialisation
    assert losses[-1] < 0.5 * losses[0]


def test_loss_counts_only_valid_pattern_positions(condition):
    lm = tiny_lm()
    codes = torch.randint(0, 16, (2, 2, 5))
    loss = lm.loss(codes, condition.states, condition.mask)
    seq, _ = lm.pattern.build(codes, 16)
    logits = lm(lm._sequence_inputs(seq), condition)
    # delay pattern: codebook 1 of frame f sits at step f + 1
    expected = torch.nn.functional.cross_entropy(logits[:, 1, 1:].reshape(-1, 16), codes[:, 1].reshape(-1))
    torch.testing.assert_close(loss.per_codebook[1], expected)


# ---------------------------------------------------------------------------------- sampling

def test_cfg_coefficient_one_equals_conditional_sampling(condition):
    lm = tiny_lm()
    for module in lm.modules():  # larger weights than the 0.02 init, so the text visibly matters
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(module.weight, std=0.3)
    sample = lambda cfg: lm.generate(condition, 10, cfg_coef=cfg, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sample(1.0), sample(None))  # doubled batch, γ = 1
    assert not torch.equal(sample(8.0), sample(None))


def test_top_k_one_and_tiny_top_p_are_greedy():
    logits = torch.randn(64, 100)
    greedy = logits.argmax(-1)
    assert torch.equal(sample_tokens(logits, SamplingParams(top_k=1)), greedy)
    assert torch.equal(sample_tokens(logits, SamplingParams(top_k=0, top_p=1e-6)), greedy)
    assert torch.equal(sample_tokens(logits, SamplingParams(temperature=0.0)), greedy)
    top3 = logits.topk(3, dim=-1).indices
    drawn = sample_tokens(logits, SamplingParams(top_k=3))
    assert (top3 == drawn[:, None]).any(-1).all()


def test_seeds_are_reproducible_and_distinct(gen):
    tokens = lambda seed: gen.generate_tokens(TEXT, duration=0.2, seed=seed)
    first = tokens(7)
    assert first.shape == (2, 2, 10) and first.dtype == torch.long
    assert torch.equal(first, tokens(7))
    assert not torch.equal(first, tokens(8))


# ------------------------------------------------------------------------- continuation, length

def test_continuation_keeps_the_prompt_tokens(gen):
    prompt = torch.randint(0, 16, (1, 2, 6))
    tokens = gen.generate_continuation_tokens(prompt, TEXT, duration=0.3, seed=0)
    assert tokens.shape == (2, 2, 15)
    assert torch.equal(tokens[..., :6], prompt.expand(2, -1, -1))
    unconditional = gen.generate_continuation_tokens(prompt, None, duration=0.3, seed=0)
    assert torch.equal(unconditional[..., :6], prompt)


def test_continuation_from_audio(gen):
    wav = gen.generate_continuation(torch.randn(1600) * 0.1, 8000, ["birds"], duration=0.4, seed=0)
    assert wav.shape == (1, 1, 20 * gen.codec.hop_length)


def test_generation_slides_past_the_context(gen):
    assert gen.max_duration == pytest.approx(23 / 50)  # max_seq_len 24, delay over 2 codebooks
    calls = []
    prompt = torch.randint(0, 16, (1, 2, 30))  # longer than the context itself
    tokens = gen.generate_continuation_tokens(prompt, ["wind"], duration=1.6, seed=0,
                                              progress=lambda done, total: calls.append((done, total)))
    assert tokens.shape == (1, 2, 80)
    assert torch.equal(tokens[..., :30], prompt)
    assert calls[-1][0] == calls[-1][1] and [done for done, _ in calls] == list(range(1, len(calls) + 1))
    wav = gen.generate(["wind"], duration=1.0, seed=0, extend_stride=0.1)
    assert wav.shape == (1, 1, 50 * gen.codec.hop_length) and torch.isfinite(wav).all()


# ------------------------------------------------------------------------------ saving, errors

def test_save_and_load_round_trip(gen, tmp_path):
    gen.save_pretrained(tmp_path / "model")
    loaded = AudioGen.from_pretrained(tmp_path / "model")
    assert loaded.lm.config == gen.lm.config and loaded.codec.config == gen.codec.config
    torch.testing.assert_close(loaded.generate_tokens(TEXT, duration=0.2, seed=1), gen.generate_tokens(TEXT, duration=0.2, seed=1))


def test_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no AudioGen model"):
        AudioGen.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "lm").mkdir()
    with pytest.raises(CheckpointError, match="config.json not found"):
        AudioGen.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(descriptions=[]), "non-empty list"),
    (dict(descriptions=["ok", "  "]), "non-empty string"),
    (dict(descriptions=[3]), "non-empty string"),
    (dict(duration=0), "duration"),
    (dict(duration=-1.0), "duration"),
    (dict(duration=301), "duration"),
    (dict(duration=float("nan")), "duration"),
    (dict(sampling=dict(top_k=5)), "SamplingParams"),
    (dict(cfg_coef=-1), "cfg_coef"),
    (dict(cfg_coef=float("inf")), "cfg_coef"),
    (dict(seed=-3), "seed"),
    (dict(progress="yes"), "progress"),
    (dict(extend_stride=5.0), "extend_stride"),
    (dict(extend_stride=float("nan")), "extend_stride"),
])
def test_invalid_parameters_raise_value_errors(gen, kwargs, message):
    kwargs = {"descriptions": ["ok"], "duration": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        gen.generate_tokens(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(top_p=1.5), "top_p"),
    (dict(temperature=-0.1), "temperature"),
])
def test_invalid_sampling_parameters_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_generation_settings_are_keyword_only_and_sampling_is_one_argument(gen):
    tokens = gen.generate_tokens(["ok"], duration=0.1, sampling=SamplingParams(top_k=5), seed=0)
    assert torch.equal(tokens, gen.generate_tokens("ok", duration=0.1, sampling=SamplingParams(top_k=5), seed=0))
    with pytest.raises(TypeError):
        gen.generate_tokens(["ok"], 0.1)  # duration only by name
    for misspelt in (dict(cfg=3.0), dict(top_k=5)):  # a typo, or a sampling setting outside SamplingParams
        with pytest.raises(TypeError, match="unexpected keyword"):
            gen.generate_tokens(["ok"], duration=0.1, **misspelt)


def test_prompt_must_be_shorter_than_the_duration(gen):
    with pytest.raises(ValueError, match="shorter than the requested duration"):
        gen.generate_continuation_tokens(torch.zeros(1, 2, 10, dtype=torch.long), duration=0.2)
    with pytest.raises(ValueError, match="prompt tokens"):
        gen.generate_continuation_tokens(torch.zeros(1, 3, 10, dtype=torch.long), duration=1.0)
    with pytest.raises(ValueError, match="2 prompts for 3 descriptions"):
        gen.generate_continuation_tokens(torch.zeros(2, 2, 5, dtype=torch.long), ["a", "b", "c"], duration=1.0)


def test_mismatched_parts_are_rejected():
    with pytest.raises(ValueError, match="codes per codebook"):
        AudioGen(tiny_lm(codebook_size=32), Codec(TINY_CODEC))
    with pytest.raises(ValueError, match="text states"):
        AudioGen(tiny_lm(), Codec(TINY_CODEC), HashedConditioner(dim=8))


def test_cached_conditioner_matches_its_encoder_and_bounds_its_cache():
    from generation.conditioners import CachedConditioner

    inner = HashedConditioner(16)
    cached = CachedConditioner(inner, capacity=2)
    texts = ["a dog barking", "rain", "", "a dog barking"]
    for _ in range(2):  # second pass from the cache
        got, want = cached(texts), inner(texts)
        assert torch.equal(got.mask, want.mask) and torch.allclose(got.states, want.states)
    assert len(cached.cache) == 2 and cached.output_dim == 16


def test_codec_reference_loads_the_shipped_codec_only_when_its_codebooks_match(tmp_path, monkeypatch):
    from generation.audiogen import CODEC_REFERENCE, write_codec_reference

    shipped = tmp_path / "shipped_codec"
    Codec(TINY_CODEC).save_pretrained(shipped)
    monkeypatch.setattr(Codec, "default_pretrained", shipped)
    model = tmp_path / "audiogen"
    tiny_lm().save_pretrained(model / "lm")
    write_codec_reference(model / CODEC_REFERENCE, Codec.from_pretrained(shipped))
    assert AudioGen.from_pretrained(model).codec.codebook_size == TINY_CODEC.quantizer.codebook_size
    Codec(TINY_CODEC).save_pretrained(shipped)  # other codebooks: the LM's tokens would mean nothing
    with pytest.raises(CheckpointError, match="not the one this language model was trained with"):
        AudioGen.from_pretrained(model)
    (model / CODEC_REFERENCE).write_text("{")
    with pytest.raises(CheckpointError, match="not a codec reference"):
        AudioGen.from_pretrained(model)
    # A codec/ folder beside the reference is checked against it too.
    Codec(TINY_CODEC).save_pretrained(model / "codec")
    write_codec_reference(model / CODEC_REFERENCE, Codec.from_pretrained(shipped))
    with pytest.raises(CheckpointError, match="is not the codec this language model was trained with"):
        AudioGen.from_pretrained(model)
    write_codec_reference(model / CODEC_REFERENCE, Codec.from_pretrained(model / "codec"))
    assert AudioGen.from_pretrained(model).codec.fingerprint() == Codec.from_pretrained(model / "codec").fingerprint()
    (model / CODEC_REFERENCE).unlink()
    shutil.rmtree(model / "codec")
    with pytest.raises(CheckpointError, match="neither a codec/ folder nor"):
        AudioGen.from_pretrained(model)
