"""The GPU plan's steps that run here: packing within a byte budget without held-out recordings,
unpacking into folders the recipes read, the chunk's command line, and collecting under a size limit."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from recipes import gpu_plan
from recipes.data import AudioSegmentDataset, ManifestEntry, read_manifest, write_manifest
from recipes.extract_tokens import load_token_items, read_token_index

HELD_OUT = "warzone2100-data"  # one of the codec recipe's data.exclude sources


def make_sources_corpus(root: Path, clips: int = 36) -> Path:
    """Clips of 0.5-2.5 s from three sources, one of them held out by the codec recipe."""
    rng = np.random.default_rng(1)
    entries = []
    for i in range(clips):
        source = ("src-a", "src-b", HELD_OUT)[i % 3]
        seconds = round(0.5 + 2.0 * rng.random(), 3)
        t = np.arange(int(seconds * 16_000)) / 16_000
        wav = 0.2 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.05 * rng.standard_normal(t.size)
        name = f"{source}/clip{i}.wav"
        (root / source).mkdir(parents=True, exist_ok=True)
        sf.write(root / name, wav.astype(np.float32), 16_000)
        split = "valid" if i % 5 == 4 else "train"
        entries.append(ManifestEntry(name, t.size / 16_000, 16_000, source, f"sound {i}", split, f"{source}/rec{i}"))
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_sources_corpus(tmp_path_factory.mktemp("sources"))


def pack(manifest: Path, out: Path, *extra: str) -> int:
    return gpu_plan.main(["pack", "codec", "--manifest", str(manifest), "--out", str(out), *extra])


def bundle_rows(path: Path):
    meta, rows, _, _ = gpu_plan.read_bundle(path)
    return meta, rows


def test_pack_stays_within_the_budget_and_leaves_held_out_recordings_out(corpus, tmp_path, capsys):
    budget = 0.05  # MiB: room for some of the clips only
    out = tmp_path / "bundle.tar"
    assert pack(corpus, out, "--budget-mib", str(budget), "--valid-clips", "2") == 0
    assert out.stat().st_size <= budget * gpu_plan.MIB
    meta, rows = bundle_rows(out)
    eligible = [e for e in read_manifest(corpus) if not e.recording_id.startswith(HELD_OUT)]
    train = [r for r in rows if r["split"] == "train"]
    assert 0 < len(train) < sum(e.split == "train" for e in eligible)  # the budget, not the corpus, ended it
    assert sum(r["split"] == "valid" for r in rows) == 2
    assert not any(r["recording_id"].startswith(HELD_OUT) for r in rows)
    assert meta["exclude"] == ["warzone2100-data", "fillets-ng-data-cs", "asterisk-core-sounds-ru-g722"]
    assert f"{len(train)} training and 2 validation items" in capsys.readouterr().out

    # The sample is seeded: the same seed packs the same clips, another seed others.
    again, other = tmp_path / "again.tar", tmp_path / "other.tar"
    pack(corpus, again, "--budget-mib", str(budget), "--valid-clips", "2")
    pack(corpus, other, "--budget-mib", str(budget), "--valid-clips", "2", "--seed", "1")
    ids = lambda path: [r["recording_id"] for r in bundle_rows(path)[1]]  # noqa: E731
    assert ids(again) == ids(out) and ids(other) != ids(out)

    # A config override's held-out prefixes count too.
    narrowed = tmp_path / "narrowed.tar"
    pack(corpus, narrowed, "--budget-mib", "1", "--set", "data.exclude=[src-a]")
    sources = {r["source"] for r in bundle_rows(narrowed)[1]}
    assert sources == {"src-b", HELD_OUT}


def test_a_budget_that_holds_no_training_clip_is_an_error(corpus, tmp_path, capsys):
    out = tmp_path / "bundle.tar"
    assert pack(corpus, out, "--budget-mib", "0.01") == 2
    assert capsys.readouterr().err.startswith("error: a budget of 10 KiB holds no training item")
    assert not out.exists()


def test_unpacked_bundle_is_a_corpus_the_recipes_read(corpus, tmp_path, capsys):
    bundle, folder = tmp_path / "bundle.tar", tmp_path / "corpus"
    assert pack(corpus, bundle, "--budget-mib", "2") == 0  # room for everything
    assert gpu_plan.main(["unpack", str(bundle), "--out", str(folder)]) == 0
    source = {e.recording_id: e for e in read_manifest(corpus) if not e.recording_id.startswith(HELD_OUT)}
    for split in ("train", "valid"):
        dataset = AudioSegmentDataset(folder / "manifest.jsonl", split, 1.0, 16_000)
        assert len(dataset) == sum(e.split == split for e in source.values())
        for entry in dataset.entries:
            assert abs(entry.duration - source[entry.recording_id].duration) < 0.020
            assert abs(sf.info(str(folder / entry.path)).duration - entry.duration) < 1e-6
        assert dataset[0]["audio"].shape == (1, 16_000)
    # Unpacking again (a second command on the same machine) finds it done.
    assert gpu_plan.main(["unpack", str(bundle), "--out", str(folder)]) == 0
    assert "already holds this bundle" in capsys.readouterr().out


def test_tokens_pack_and_unpack_into_a_token_folder(tmp_path):
    tokens, rng = tmp_path / "tokens", np.random.default_rng(2)
    tokens.mkdir()
    items = {f"item{i}": torch.from_numpy(rng.integers(0, 1024, (4, 20 + 7 * i)).astype(np.int16)) for i in range(12)}
    save_file(items, str(tokens / "shard-r0-00000.safetensors"))
    rows = [{"shard": "shard-r0-00000.safetensors", "key": key, "caption": f"caption {key}",
             "frames": int(codes.shape[-1]), "split": "valid" if key in ("item3", "item7") else "train"}
            for key, codes in items.items()]
    (tokens / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tokens / "codec.json").write_text('{"codec_fingerprint": "00"}\n')
    bundle, folder = tmp_path / "tokens.tar", tmp_path / "unpacked"
    assert gpu_plan.main(["pack", "lm", "--tokens", str(tokens), "--out", str(bundle), "--budget-mib", "1"]) == 0
    assert gpu_plan.main(["unpack", str(bundle), "--out", str(folder)]) == 0
    unpacked = read_token_index(folder)
    assert len(unpacked) == 12 and (folder / "codec.json").read_text() == (tokens / "codec.json").read_text()
    by_caption = {r["caption"]: codes for r, codes in zip(unpacked, load_token_items(folder, unpacked))}
    for key, codes in items.items():
        assert torch.equal(by_caption[f"caption {key}"], codes.long())
    assert [r["split"] for r in unpacked[:2]] == ["valid", "valid"]  # validation packed first


def test_a_file_that_is_not_a_bundle_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bundle.tar").write_bytes(b"not a tar")
    assert gpu_plan.main(["unpack", str(tmp_path / "bundle.tar"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_default_budget_is_60_mib_less_what_git_sends(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("/data/\n")
    (repo / "tracked.bin").write_bytes(b"x" * 1000)
    (repo / "untracked.bin").write_bytes(b"x" * 500)
    (repo / "data").mkdir()
    (repo / "data" / "ignored.bin").write_bytes(b"x" * 10_000)
    (repo / "bundle.tar").write_bytes(b"x" * 700)  # the bundle being rewritten is not counted
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "w.bin").write_bytes(b"x" * 300)
    subprocess.run(["git", "-C", str(repo), "add", "tracked.bin", ".gitignore"], check=True)
    budget = gpu_plan.default_budget(repo / "bundle.tar", [tmp_path / "run"], root=repo)
    assert budget == 60 * gpu_plan.MIB - (1000 + 500 + len("/data/\n") + 300)


def test_a_chunk_resumes_warm_starts_or_starts_afresh(tmp_path):
    data, run = tmp_path / "corpus", tmp_path / "run"
    fresh = gpu_plan.chunk_command("codec", data, run, 8, init=Path("codec/pretrained/default"))
    assert fresh.start == "warm start from codec/pretrained/default"
    command = fresh.command
    assert command[command.index("--max-time") + 1] == "8" and "--resume" not in command
    settings = command[command.index("--set") + 1:]
    assert settings == [f"data.manifest={data / 'manifest.jsonl'}", "data.valid_manifest=null",
                        "trainer.precision=auto", "init=codec/pretrained/default"]
    assert gpu_plan.chunk_command("codec", data, run, 8).start == "from scratch"

    (run / "best").mkdir(parents=True)  # a chunk brought back fp16 weights only
    weights_only = gpu_plan.chunk_command("vocoder", data, run, 9.5, precision="bf16-mixed", init=Path("elsewhere"))
    assert weights_only.start == f"warm start from {run / 'best'}"
    assert f"init={run / 'best'}" in weights_only.command and "trainer.precision=bf16-mixed" in weights_only.command

    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"state")
    resumed = gpu_plan.chunk_command("lm", data, run, 8, overrides=["optim.lr=1e-4"])
    assert resumed.start == "resume" and "--resume" in resumed.command
    assert resumed.command[-3:] == [f"data.tokens={data}", "trainer.precision=auto", "optim.lr=1e-4"]


def test_train_refuses_a_folder_that_was_not_unpacked(tmp_path, capsys):
    assert gpu_plan.main(["train", "codec", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    assert "unpack the bundle" in capsys.readouterr().err


def make_run(root: Path, checkpoint_mb: float) -> Path:
    """A run folder as the recipes leave it, with 2 MB of fp32 weights."""
    (root / "best").mkdir(parents=True)
    save_file({"weight": torch.randn(500_000), "steps": torch.arange(10), "ema": torch.full((4,), 1e6)},
              str(root / "best" / "model.safetensors"), metadata={"format": "pt"})
    (root / "best" / "config.json").write_text('{"class": "Codec", "config": {}}\n')
    (root / "best" / "metrics.json").write_text('{"step": 100}\n')
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"\0" * int(checkpoint_mb * 1e6))
    (root / "checkpoints" / "step100.ckpt").write_bytes(b"\0" * 1000)
    (root / "csv").mkdir()
    (root / "csv" / "metrics.csv").write_text("step,loss\n100,1.0\n")
    (root / "config.yaml").write_text("seed: 0\n")
    (root / "tensorboard").mkdir()
    (root / "tensorboard" / "events").write_bytes(b"\0" * 100_000)
    return root


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_collect_brings_back_fp16_weights_and_the_checkpoint_when_it_fits(tmp_path):
    run, out = make_run(tmp_path / "run", checkpoint_mb=3), tmp_path / "back"
    assert gpu_plan.main(["collect", str(run), "--out", str(out)]) == 0
    assert folder_bytes(out) <= 16e6
    weights = load_file(str(out / "best" / "model.safetensors"))
    assert weights["weight"].dtype == torch.float16 and weights["steps"].dtype == torch.int64
    assert weights["ema"].dtype == torch.float32  # beyond fp16's range: kept as it was
    assert (out / "checkpoints" / "last.ckpt").stat().st_size == 3_000_000
    assert not (out / "checkpoints" / "step100.ckpt").exists() and not (out / "tensorboard").exists()
    assert (out / "config.yaml").is_file() and (out / "csv" / "metrics.csv").is_file()
    report = json.loads((out / "collected.json").read_text())
    assert report["resume"].startswith("checkpoints/last.ckpt") and report["fp32_kept"] == ["ema"]


def test_collect_keeps_the_fp16_weights_only_when_the_checkpoint_does_not_fit(tmp_path, capsys):
    run, out = make_run(tmp_path / "run", checkpoint_mb=3), tmp_path / "back"
    assert gpu_plan.main(["collect", str(run), "--out", str(out), "--limit-mb", "2"]) == 0
    assert folder_bytes(out) <= 2e6
    assert not (out / "checkpoints").exists() and (out / "best" / "model.safetensors").is_file()
    assert "fp16 weights only" in json.loads((out / "collected.json").read_text())["resume"]
    assert "note: fp16 weights only" in capsys.readouterr().err
    # The next chunk warm-starts from what came back.
    assert gpu_plan.chunk_command("codec", tmp_path, out, 8).start == f"warm start from {out / 'best'}"


def test_collect_refuses_a_limit_below_the_weights_and_a_run_without_weights(tmp_path, capsys):
    run, out = make_run(tmp_path / "run", checkpoint_mb=1), tmp_path / "back"
    assert gpu_plan.main(["collect", str(run), "--out", str(out), "--limit-mb", "0.5"]) == 2
    assert "over --limit-mb 0.5" in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty").mkdir()
    assert gpu_plan.main(["collect", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "holds no weights" in capsys.readouterr().err
