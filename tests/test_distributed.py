"""Training under DDP: codebooks learn from every process, replicas are compared buffers included,
and validation logs the same metrics on every rank. Two gloo processes on the CPU."""

import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from codec import QuantizerConfig
from codec.quantizer import GroupResidualQuantizer
from recipes.audio_module import ValidationMeans
from recipes.codec_module import CodecModule
from recipes.config import load_recipe_config
from recipes.train import CheckReplicasInSync, diverged_tensors, replica_fingerprint

WORLD = 2
CENTRES = (5.0, -5.0)  # each rank's latents sit around its own centre


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, port: int, out: str) -> None:
    """One process: trains a quantizer built before the process group (as the recipe builds its
    model before ``trainer.fit``) on this rank's data, and reduces validation metrics where rank 1's
    PESQ failed."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    quantizer = GroupResidualQuantizer(4, QuantizerConfig(groups=1, levels=1, codebook_size=8, kmeans_init=True,
                                                          kmeans_iters=4, quantize_dropout=False))
    means = ValidationMeans(["mel_distance", "si_sdr", "pesq"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        quantizer.train()
        generator = torch.Generator().manual_seed(rank)
        for _ in range(3):  # k-means initialisation, then EMA updates (and dead-code checks)
            quantizer(CENTRES[rank] + 0.1 * torch.randn(4, 4, 16, generator=generator))
        save_file({"codebook": quantizer.codebook_weights()[0].contiguous()}, f"{out}/codebook{rank}.safetensors")

        means.add("mel_distance", 1.0 + 2.0 * rank)
        means.add("si_sdr", 10.0 if rank == 0 else -math.inf)
        means.add("pesq", 3.0 if rank == 0 else None)  # PESQ failed on rank 1's clip
        logged = {name: metric.compute().item() for name, metric in means.loggable().items()}
        Path(out, f"metrics{rank}.json").write_text(json.dumps(logged))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def test_codebooks_are_identical_across_ranks_and_learn_from_both(two_ranks):
    books = [load_file(str(two_ranks / f"codebook{rank}.safetensors"))["codebook"] for rank in range(WORLD)]
    assert torch.equal(books[0], books[1])
    centres = books[0].mean(-1)  # each entry's mean coordinate: near +5 or -5
    assert (centres > 4).any() and (centres < -4).any(), centres


def test_validation_logs_the_same_metrics_on_every_rank(two_ranks):
    logged = [json.loads((two_ranks / f"metrics{rank}.json").read_text()) for rank in range(WORLD)]
    assert logged[0] == logged[1]
    assert logged[0] == {"val/mel_distance": 2.0, "val/si_sdr": 10.0, "val/pesq": 3.0}


def test_a_metric_without_any_value_is_logged_as_nan():
    means = ValidationMeans(["pesq"])
    means.add("pesq", None)
    assert math.isnan(means.loggable()["val/pesq"].compute().item())


def test_codec_validation_logs_every_configured_metric_when_pesq_fails(monkeypatch):
    import recipes.audio_module as audio_module

    def failing_pesq(*_):
        raise RuntimeError("no utterances detected")

    monkeypatch.setattr(audio_module, "pesq_wideband", failing_pesq)
    monkeypatch.setattr(audio_module, "stoi", lambda *_: 0.5)
    module = CodecModule(load_recipe_config("codec", overrides=["data.speech=true"], smoke=True))
    logged = {}
    monkeypatch.setattr(module, "log_dict", lambda values, **_: logged.update(values))
    audio = 0.1 * torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(0))
    module.validation_step({"audio": audio, "num_samples": torch.tensor([4000, 3000])}, 0)
    module.on_validation_epoch_end()
    assert set(logged) == {"val/mel_distance", "val/si_sdr", "val/pesq", "val/stoi"}
    assert math.isnan(logged["val/pesq"].compute().item())
    assert logged["val/stoi"].compute().item() == pytest.approx(0.5)


def test_replica_check_compares_buffers_too(tmp_path):
    modules = [GroupResidualQuantizer(4, QuantizerConfig(groups=1, levels=1, codebook_size=8)) for _ in range(WORLD)]
    modules[1].load_state_dict(modules[0].state_dict())
    assert not list(modules[0].parameters())  # only buffers: a parameter-only check saw nothing
    with torch.no_grad():
        modules[1].vq.rvqs[0].layers[0]._codebook.cluster_size[0, 3] += 1.0  # EMA statistics drifted

    names, _ = replica_fingerprint(modules[0])
    gathered = torch.stack([replica_fingerprint(m)[1] for m in modules])
    assert diverged_tensors(names, gathered) == ["vq.rvqs.0.layers.0._codebook.cluster_size"]

    class Replica(torch.nn.Module):  # rank 0's module; all_gather answers with both ranks' checksums
        def __init__(self):
            super().__init__()
            self.quantizer, self.device = modules[0], torch.device("cpu")

        def all_gather(self, _):
            return gathered

    trainer = SimpleNamespace(world_size=WORLD, is_global_zero=True)
    with pytest.raises(RuntimeError, match="cluster_size"):
        CheckReplicasInSync(tmp_path / "replicas.json").on_train_end(trainer, Replica())
    report = json.loads((tmp_path / "replicas.json").read_text())
    assert not report["in_sync"] and report["diverged"] == ["quantizer.vq.rvqs.0.layers.0._codebook.cluster_size"]
