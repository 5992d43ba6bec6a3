"""The GAN training loop on Lightning's public API, and an encoder that learns against a frozen quantizer."""

import csv
import warnings

import lightning as L
import torch

from codec import QuantizerConfig
from codec.quantizer import GroupResidualQuantizer
from recipes.codec_module import CodecModule
from recipes.config import load_recipe_config
from recipes.train import ResumableCSVLogger
from recipes.vocoder_module import VocoderModule


def test_discriminator_steps_update_without_counting_as_global_steps(tiny_corpus):
    config = load_recipe_config("vocoder", overrides=[f"data.manifest={tiny_corpus}", "optim.adversarial_start_step=2"],
                                smoke=True)
    module = VocoderModule(config)
    before = [p.detach().clone() for p in module.discriminators.parameters()]
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=module.datamodule())
    assert trainer.global_step == 4  # generator steps only: one per batch
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 4
    assert any(not torch.equal(b, p) for b, p in zip(before, module.discriminators.parameters()))


def _write_log(path, steps):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["loss", "step"])
        writer.writeheader()
        writer.writerows({"loss": 1.0 / step, "step": step} for step in steps)


def test_resumed_csv_log_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "csv" / "metrics.csv"
    _write_log(path, range(1, 7))
    logger = ResumableCSVLogger(tmp_path, name="csv", version="", keep_until_step=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log_metrics({"loss": 0.1, "val/pesq": 3.0}, step=5)
        logger.save()
    assert not [w for w in caught if "will be deleted" in str(w.message)]
    rows = list(csv.DictReader(path.open()))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["val/pesq"] == "3.0" and rows[0]["val/pesq"] == ""

    fresh = tmp_path / "fresh" / "csv" / "metrics.csv"
    _write_log(fresh, range(1, 7))
    logger = ResumableCSVLogger(tmp_path / "fresh", name="csv", version="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.log_metrics({"loss": 0.5}, step=1)
        logger.save()
    assert [int(row["step"]) for row in csv.DictReader(fresh.open())] == [1]


def test_frozen_quantizer_passes_gradients_to_the_encoder():
    config = load_recipe_config("codec", overrides=["optim.frozen=[quantizer]"], smoke=True)
    module = CodecModule(config).train()
    assert not module.generator.quantizer.training and module.generator.encoder.training
    audio = 0.1 * torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(0))
    _, loss, _ = module.generator_loss(audio, adversarial=False)
    loss.backward()
    grads = [p.grad for p in module.generator.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_eval_quantizer_is_straight_through_and_exact_for_inference():
    torch.manual_seed(0)
    quantizer = GroupResidualQuantizer(8, QuantizerConfig(groups=2, levels=2, codebook_size=16)).eval()
    latent = torch.randn(2, 8, 5)
    exact = quantizer.decode(quantizer.encode(latent))
    with torch.no_grad():
        assert torch.equal(quantizer(latent).quantized, exact)
    assert torch.equal(quantizer(latent).quantized, exact)  # a latent without gradients: the same

    latent.requires_grad_(True)
    out = quantizer(latent, num_codebooks=2)
    torch.testing.assert_close(out.quantized, quantizer.decode(out.codes), rtol=0, atol=1e-6)
    upstream = torch.randn_like(latent)
    out.quantized.backward(upstream)
    assert torch.equal(latent.grad, upstream)  # the straight-through estimator: gradients pass unchanged


def test_resume_refuses_a_checkpoint_of_another_model_in_one_line(tmp_path):
    """A run started under other recipe defaults saved an empty model section: its weights tell."""
    import pytest
    import torch

    from recipes.config import RecipeConfigError
    from recipes.train import checked_resume_step

    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 3, "hyper_parameters": {"model": {}},
                "state_dict": {"layer.weight": torch.zeros(4, 2), "old.bias": torch.zeros(4)}}, path)
    same = torch.nn.Module()
    same.layer = torch.nn.Linear(2, 4, bias=False)
    same.old = torch.nn.Module()
    same.old.register_buffer("bias", torch.zeros(4))
    assert checked_resume_step(path, {"model": {}}, (), same) == 3
    other = torch.nn.Module()
    other.layer = torch.nn.Linear(3, 4, bias=False)
    with pytest.raises(RecipeConfigError, match="another model's weights.*layer.weight") as err:
        checked_resume_step(path, {"model": {}}, (), other)
    assert "\n" not in str(err.value)
