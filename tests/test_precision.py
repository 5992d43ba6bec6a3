"""``trainer.precision: auto`` picks bfloat16 only where the hardware has it."""

from __future__ import annotations

import torch

from recipes.precision import cpu_has_native_bf16, resolve_precision


def test_explicit_precision_is_kept():
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_auto_follows_the_cpu_flags(tmp_path, monkeypatch):
    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_has_native_bf16(with_bf16) and not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")
    import recipes.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"


def test_auto_on_cuda_asks_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16-mixed"


def test_codec_and_lm_recipes_default_to_auto_and_smoke_runs_pin_fp32():
    from recipes.config import load_recipe_config

    assert load_recipe_config("codec")["trainer"]["precision"] == "auto"
    streaming = load_recipe_config("codec", "recipes/configs/codec_streaming.yaml")
    assert streaming["trainer"]["precision"] == "auto"
    # the tests' tiny runs compute alike on machines with and without bfloat16
    assert load_recipe_config("codec", smoke=True)["trainer"]["precision"] == "32-true"
    assert load_recipe_config("lm")["trainer"]["precision"] == "auto"
    assert load_recipe_config("lm", smoke=True)["trainer"]["precision"] == "32-true"
    assert load_recipe_config("vocoder")["trainer"]["precision"] == "32-true"  # not compared yet
