"""The training recipes end to end on a few seconds of synthetic audio (the --smoke configs).

Each run goes through a subprocess, as a user runs it; DDP runs start two gloo processes on the CPU.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codec import Codec, SpectralCodec, SpectralCodecConfig
from generation import AudioGen
from recipes.config import RecipeConfigError, apply_overrides, load_recipe_config
from recipes.lm_module import learning_rate_factor
from recipes.train import RunTimer, parse_max_time
from vocoder import Vocoder

ROOT = Path(__file__).resolve().parents[1]
# The codec recipe's default is the shipped spectral design; these runs train the waveform design.
WAVEFORM = ("--config", str(ROOT / "recipes/configs/codec_waveform.yaml"))


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc


def train(task: str, output: Path, *overrides: str, extra=()) -> subprocess.CompletedProcess:
    proc = run("recipes.train", task, "--smoke", "--output", str(output), *extra, "--set", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def last_step(output: Path) -> int:
    state = torch.load(output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(state["global_step"])


@pytest.fixture(scope="module")
def codec_run(tiny_corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("codec_run")
    train("codec", output, f"data.manifest={tiny_corpus}", extra=WAVEFORM)
    return output


def test_codec_recipe_trains_exports_and_resumes(codec_run, tiny_corpus):
    best = codec_run / "best"
    codec = Codec.from_pretrained(best)
    audio = codec.decode(codec.encode(torch.randn(1, 8000) * 0.1, 16_000))
    assert torch.isfinite(audio).all()
    # Discriminators are exported beside the generator so a shipped model can be fine-tuned.
    assert load_file(str(best / "discriminators.safetensors"))
    assert (codec_run / "csv" / "metrics.csv").read_text().count("\n") > 2
    assert list((codec_run / "tensorboard").glob("events.out.tfevents.*"))
    assert "val/mel_distance" in json.loads((best / "metrics.json").read_text())

    before = last_step(codec_run)
    rows_before = (codec_run / "csv" / "metrics.csv").read_text().splitlines()
    train("codec", codec_run, f"data.manifest={tiny_corpus}", extra=(*WAVEFORM, "--resume", "--max-steps", str(before + 2)))
    assert last_step(codec_run) == before + 2  # continued from the checkpoint, not from zero
    # The resumed run appends to the earlier log: every earlier row is still there.
    rows_after = list(csv.DictReader((codec_run / "csv" / "metrics.csv").open()))
    earlier = list(csv.DictReader(rows_before))
    assert len(rows_after) > len(earlier)
    assert [dict((k, v) for k, v in row.items() if v) for row in rows_after[:len(earlier)]] == \
        [dict((k, v) for k, v in row.items() if v) for row in earlier]


def test_a_resumed_run_decays_its_learning_rate_as_its_own_config_says(codec_run, tiny_corpus, tmp_path):
    run_dir = tmp_path / "cooled"
    shutil.copytree(codec_run, run_dir)
    before = last_step(run_dir)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    rate = saved["optimizer_states"][0]["param_groups"][0]["lr"]
    train("codec", run_dir, f"data.manifest={tiny_corpus}", "optim.lr_decay=0.5",
          extra=(*WAVEFORM, "--resume", "--max-steps", str(before + 2)))
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert [state["gamma"] for state in resumed["lr_schedulers"]] == [0.5, 0.5]
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(rate * 0.25)


def test_damaged_checkpoint_and_changed_model_are_one_line_errors(codec_run, tiny_corpus, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(codec_run, run_dir)
    proc = run("recipes.train", "codec", "--smoke", *WAVEFORM, "--output", str(run_dir), "--resume", "--set",
               f"data.manifest={tiny_corpus}", "model.latent_dim=8")
    assert proc.returncode == 2 and "model config" in proc.stderr and "differs in latent_dim" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Settings that only steer training (here quantizer dropout) may change on resume.
    before = last_step(run_dir)
    train("codec", run_dir, f"data.manifest={tiny_corpus}", "model.quantizer.quantize_dropout=false",
          extra=(*WAVEFORM, "--resume", "--max-steps", str(before + 2)))
    assert last_step(run_dir) == before + 2
    # In a copied run folder too, periodic saves overwrite last.ckpt (no last-v1.ckpt beside a stale
    # one), so a run killed before its end resumes from its newest state.
    assert not list((run_dir / "checkpoints").glob("last-v*.ckpt"))
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    proc = run("recipes.train", "codec", "--smoke", *WAVEFORM, "--output", str(run_dir), "--resume", "--set",
               f"data.manifest={tiny_corpus}")
    assert proc.returncode == 2 and "last.ckpt is damaged" in proc.stderr and "Traceback" not in proc.stderr


def test_warm_start_from_saved_weights(codec_run, tiny_corpus, tmp_path):
    proc = run("recipes.train", "codec", "--smoke", *WAVEFORM, "--output", str(tmp_path / "warm"), "--max-steps", "1",
               "--set", f"data.manifest={tiny_corpus}", f"init={codec_run / 'best'}")
    assert proc.returncode == 0 and "warm start" in proc.stderr, proc.stderr[-2000:]
    proc = run("recipes.train", "vocoder", "--smoke", "--output", str(tmp_path / "bad"), "--max-steps", "1",
               "--set", f"data.manifest={tiny_corpus}", f"init={codec_run / 'best'}")
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_gan_batches_count_once(tiny_corpus, tmp_path):
    # The smoke config starts the discriminators at batch 2 and stops at step 4: 4 batches, not 3.
    train("vocoder", tmp_path, f"data.manifest={tiny_corpus}")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 4


@pytest.mark.parametrize("pattern", ["delay", "parallel", "flatten"])
def test_language_model_trains_a_full_length_crop_with_every_pattern(pattern):
    from recipes.lm_module import LanguageModelModule

    config = load_recipe_config("lm", overrides=[
        "model={codebook_size: 16, dim: 32, num_layers: 1, num_heads: 2, ffn_dim: 64, max_seq_len: 40, "
        f"text_dim: 32, conditioner: 'hashed:32', pattern: {pattern}}}"])
    module = LanguageModelModule(config)
    frames = module._max_frames()
    assert frames > 0
    codes = torch.randint(0, 16, (2, module.lm_config.num_codebooks, frames))
    loss = module._loss({"codes": codes, "caption": ["a bell", "rain"]})
    assert torch.isfinite(loss.total)
    loss.total.backward()


def test_vocoder_recipe_trains_and_exports(tiny_corpus, tmp_path):
    train("vocoder", tmp_path, f"data.manifest={tiny_corpus}")
    voc = Vocoder.from_pretrained(tmp_path / "best")
    assert voc.decode(voc.mel(torch.randn(4000) * 0.1, 16_000)).shape == (1, 1, 4000)


def test_tokens_then_language_model_give_a_loadable_audiogen(codec_run, tiny_corpus, tmp_path):
    tokens = tmp_path / "tokens"
    proc = run("recipes.extract_tokens", "--codec", str(codec_run / "best"), "--manifest", str(tiny_corpus),
               "--out", str(tokens), "--max-seconds", "1", "--mix-copies", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {row["split"] for row in rows} == {"train", "valid"}
    assert any(" and " in row["caption"] for row in rows)  # mixed copies join captions

    output = tmp_path / "lm"
    train("lm", output, f"data.tokens={tokens}", f"data.codec={codec_run / 'best'}")
    gen = AudioGen.from_pretrained(output / "best")
    wav = gen.generate(["a dog barking"], duration=0.4, seed=0)
    assert wav.shape == (1, 1, int(0.4 * gen.sample_rate))

    # The tokens name their codec: an LM run over them with another codec is refused before training.
    assert (tokens / "codec.json").is_file()
    other = Codec(Codec.from_pretrained(codec_run / "best").config)  # same architecture, other codebooks
    other.save_pretrained(tmp_path / "other")
    proc = run("recipes.train", "lm", "--smoke", "--output", str(tmp_path / "bad"), "--set",
               f"data.tokens={tokens}", f"data.codec={tmp_path / 'other'}")
    assert proc.returncode == 2 and "not the codec that made these tokens" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", ["codec", "vocoder", "lm"])
def test_ddp_on_two_cpu_processes_keeps_replicas_identical(task, codec_run, tiny_corpus, tmp_path):
    if task == "lm":
        tokens = tmp_path / "tokens"
        proc = run("recipes.extract_tokens", "--codec", str(codec_run / "best"), "--manifest", str(tiny_corpus),
                   "--out", str(tokens), "--max-seconds", "1", "--limit", "3")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len((tokens / "index.jsonl").read_text().splitlines()) == 3 + 2  # 4 train clips cut to 3
        overrides = (f"data.tokens={tokens}", f"data.codec={codec_run / 'best'}")
    else:
        overrides = (f"data.manifest={tiny_corpus}",)
    output = tmp_path / "run"
    train(task, output, *overrides, extra=("--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"))
    report = json.loads((output / "replicas.json").read_text())
    assert report["world_size"] == 2 and report["in_sync"]


def test_bad_configuration_is_a_one_line_error(tmp_path):
    proc = run("recipes.train", "codec", "--smoke", "--output", str(tmp_path), "--set", "model.no_such_field=1",
               "data.manifest=/nonexistent/manifest.jsonl")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:")


def test_a_resumed_run_gets_its_whole_time_budget():
    timer = RunTimer(duration="00:00:10:00", interval="step")
    timer.load_state_dict({"time_elapsed": {"train": 3600.0}})  # the run it resumes took an hour
    assert timer.time_remaining() > 500


def test_config_overrides_and_time_budget():
    config = load_recipe_config("codec", overrides=["optim.lr=1e-4", "model.quantizer.levels=4"])
    assert config["optim"]["lr"] == pytest.approx(1e-4)
    assert config["model"]["quantizer"]["levels"] == 4
    with pytest.raises(RecipeConfigError):
        apply_overrides({}, ["no-equals-sign"])
    assert parse_max_time("90") == "00:01:30:00"
    assert parse_max_time("00:02:00:00") == "00:02:00:00"
    with pytest.raises(RecipeConfigError):
        parse_max_time("2h")


def test_language_model_cooldown_falls_to_zero_and_ends_the_run():
    factors = [learning_rate_factor(step, warmup=10, cooldown_start=100, cooldown_steps=50) for step in range(160)]
    assert factors[4] == pytest.approx(0.5) and factors[9] == pytest.approx(1.0)
    assert factors[98] == pytest.approx(learning_rate_factor(98, warmup=10))  # unchanged before the cool-down
    assert all(a > b for a, b in zip(factors[99:150], factors[100:150]))
    assert factors[149] == 0.0
    config = load_recipe_config("lm", overrides=["optim.cooldown_start=7000", "optim.cooldown_steps=500"])
    assert config["trainer"]["max_steps"] == 7500
    with pytest.raises(RecipeConfigError):
        load_recipe_config("lm", overrides=["optim.cooldown_steps=0"])


def train_spectral_codec(tiny_corpus: Path, output: Path, *overrides: str) -> subprocess.CompletedProcess:
    """The codec recipe's default (spectral) design on the tiny corpus, as a user runs it."""
    return run("recipes.train", "codec", "--smoke", "--output", str(output), "--set", f"data.manifest={tiny_corpus}",
               *overrides)


def test_spectral_codec_recipe_with_a_trained_vocoder(tiny_corpus, tmp_path):
    vocoder = Vocoder(SpectralCodecConfig.tiny().vocoder)
    vocoder.save_pretrained(tmp_path / "vocoder")
    proc = train_spectral_codec(tiny_corpus, tmp_path / "run", f"vocoder={tmp_path / 'vocoder'}",
                                "model.vocoder.backbone={kind: convnext, dim: 32, intermediate_dim: 64, num_layers: 2}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    codec = Codec.from_pretrained(tmp_path / "run" / "best")
    assert isinstance(codec, SpectralCodec)
    # The trained vocoder was loaded into the codec and kept frozen.
    for name, value in vocoder.state_dict().items():
        assert torch.allclose(codec.vocoder.state_dict()[name], value)
    assert torch.isfinite(codec.decode(codec.encode(torch.randn(1, 8000) * 0.1, 16_000))).all()
    rows = (tmp_path / "run" / "csv" / "metrics.csv").read_text()
    assert "cpu_hours" in rows.splitlines()[0] and "val/mel_distance" in rows.splitlines()[0]

    # Decoder-only fine-tuning from those weights (whose vocoder config is not the recipe's
    # default): the codes keep their meaning, so the fingerprint and the encoder stay as they were.
    proc = train_spectral_codec(tiny_corpus, tmp_path / "tuned", f"init={tmp_path / 'run' / 'best'}",
                                "optim.frozen=[encoder, quantizer]", "loss.linear_mel=1.0")
    assert proc.returncode == 0 and "warm start" in proc.stderr, proc.stderr[-3000:]
    tuned = Codec.from_pretrained(tmp_path / "tuned" / "best")
    assert tuned.fingerprint() == codec.fingerprint()
    before, after = codec.state_dict(), tuned.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith(("encoder.", "quantizer.", "vocoder.")))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("decoder."))
    assert "train/linear_mel" in (tmp_path / "tuned" / "csv" / "metrics.csv").read_text().splitlines()[0]
    # Resuming builds the codec around the saved codec's vocoder too (its config is not the recipe's).
    steps = last_step(tmp_path / "tuned")
    proc = train_spectral_codec(tiny_corpus, tmp_path / "tuned", f"init={tmp_path / 'run' / 'best'}",
                                "optim.frozen=[encoder, quantizer]", "--resume", "--max-steps", str(steps + 1))
    assert proc.returncode == 0 and last_step(tmp_path / "tuned") == steps + 1, proc.stderr[-3000:]
    proc = train_spectral_codec(tiny_corpus, tmp_path / "bad", "optim.frozen=[encoderr]")
    assert proc.returncode == 2 and "encoderr" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", ["codec", "vocoder", "lm"])
def test_kill_and_resume(task, codec_run, tiny_corpus, tmp_path):
    """``kill -9`` after a checkpoint, then ``--resume``: the run continues from that checkpoint's
    step and the log keeps its earlier rows. The final weights are not compared with an uninterrupted
    run's: the data order is restored (tests/test_sampling.py checks that every example of the epoch is
    seen once), but the random crop offsets and augmentation draws after the checkpoint are not."""
    if task == "lm":
        tokens = tmp_path / "tokens"
        proc = run("recipes.extract_tokens", "--codec", str(codec_run / "best"), "--manifest", str(tiny_corpus),
                   "--out", str(tokens), "--max-seconds", "1")
        assert proc.returncode == 0, proc.stderr[-3000:]
        overrides = [f"data.tokens={tokens}", f"data.codec={codec_run / 'best'}"]
    else:
        overrides = [f"data.manifest={tiny_corpus}"]
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "recipes.train", task, "--smoke", "--output", str(output), "--set", *overrides]
    proc = subprocess.Popen([*command, "trainer.max_steps=100000"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, "training ended before it could be killed"
            try:
                if last_step(output) >= 4:
                    break
            except (OSError, RuntimeError, EOFError):  # not written yet, or being written
                pass
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step = last_step(output)
    assert step >= 4
    def logged(path: Path):
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(path.open())]

    before = [row for row in logged(output / "csv" / "metrics.csv") if float(row["step"]) <= step]
    resumed = subprocess.run([*command, "trainer.max_steps=100000", "--resume", "--max-steps", str(step + 2)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert last_step(output) == step + 2
    after = logged(output / "csv" / "metrics.csv")
    assert before and after[:len(before)] == before and len(after) > len(before)


def test_ctrl_c_saves_the_run_state(tiny_corpus, tmp_path):
    # No periodic checkpoint at all: only the interrupt can write last.ckpt.
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    # -X faulthandler: should the run ever hang after the interrupt, SIGABRT prints where every thread is.
    stderr = (tmp_path / "stderr.txt").open("w")  # a file, not a pipe: a full pipe would block the run
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "recipes.train", "codec", "--smoke",
                             "--output", str(output), "--set", f"data.manifest={tiny_corpus}",
                             "trainer.max_steps=100000", "trainer.checkpoint_every_n_steps=100000"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        while not (output / "best" / "metrics.json").is_file():  # the first validation has run
            assert proc.poll() is None and time.monotonic() < deadline, "training ended or never validated"
            time.sleep(0.2)
        time.sleep(1.0)  # back in the training loop, where a user's Ctrl-C lands
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            pytest.fail("the run did not stop within 120 s of Ctrl-C; its threads:\n"
                        + (tmp_path / "stderr.txt").read_text()[-6000:])
    finally:
        proc.kill()
        proc.wait()
        stderr.close()
    assert last_step(output) >= 2


def test_learning_curve_lines_place_each_point_by_cpu_time_and_step(tmp_path):
    from recipes.evaluate import curves_section, read_curves
    log = tmp_path / "run" / "csv" / "metrics.csv"
    log.parent.mkdir(parents=True)
    # ComputeTime logs one step after validation, one before it in a run resumed mid-epoch, two before it
    # after a second such resume; the last validation has no CPU time (a killed run); a checkpoint's own
    # CPU-time row (step 1100) belongs to no validation.
    log.write_text("step,cpu_hours,val/pesq,val/stoi\n499,,1.2,0.58\n500,0.25,,\n749,0.4,,\n750,,1.25,0.59\n"
                   "998,0.5,,\n1000,,1.28,0.6\n1100,0.55,,\n1249,,1.3,0.6\n")
    curves = read_curves([tmp_path / "run"], ("val/pesq", "val/stoi"))
    assert curves == {"run": [{"step": 499, "cpu_hours": 0.25, "val/pesq": 1.2, "val/stoi": 0.58},
                              {"step": 750, "cpu_hours": 0.4, "val/pesq": 1.25, "val/stoi": 0.59},
                              {"step": 1000, "cpu_hours": 0.5, "val/pesq": 1.28, "val/stoi": 0.6},
                              {"step": 1249, "val/pesq": 1.3, "val/stoi": 0.6}]}
    lines = curves_section(curves, "intro", lambda p: f"PESQ {p['val/pesq']:.2f}")
    assert "- run: 0.25 CPU-h / step 499: PESQ 1.20, 0.40 CPU-h / step 750: PESQ 1.25, 0.50 CPU-h / step 1000: PESQ 1.28, step 1249: PESQ 1.30" in lines


def test_learning_curves_of_a_device_run_count_examples_seen(tmp_path):
    from recipes.evaluate import curves_figure, curves_section, read_curves
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    (cpu / "csv").mkdir(parents=True)
    gpu.mkdir()
    (cpu / "csv" / "metrics.csv").write_text("step,cpu_hours,val/mel_distance\n999,,0.8\n1000,0.5,\n")
    (cpu / "config.yaml").write_text("data: {batch_size: 16}\n")
    # A device run exports its log flat beside its weights; its batch size comes from its config.yaml,
    # and its CPU time (the device's process, not its compute) is left out.
    (gpu / "metrics.csv").write_text("step,cpu_hours,gpu_hours,val/mel_distance\n999,,,0.6\n1000,0.01,0.05,\n"
                                     "1999,,,0.5\n")
    (gpu / "config.yaml").write_text("data:\n  batch_size: 64\n")
    curves = read_curves([cpu, gpu], ("val/mel_distance",))
    assert [p["examples"] for p in curves["gpu"]] == [64_000, 128_000]
    assert curves["gpu"][0]["gpu_hours"] == 0.05 and not any("cpu_hours" in p for p in curves["gpu"])
    assert "- gpu: 0.05 GPU-h / step 999: 0.600, step 1999: 0.500" in curves_section(
        curves, "", lambda p: f"{p['val/mel_distance']:.3f}")
    assert curves["cpu"] == [{"step": 999, "cpu_hours": 0.5, "val/mel_distance": 0.8, "examples": 16_000}]
    curves_figure(curves, ("val/mel_distance",), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    (gpu / "config.yaml").write_text("not: [valid")
    assert "examples" not in read_curves([gpu], ("val/mel_distance",))["gpu"][0]


def test_compute_time_logs_gpu_hours_on_an_accelerator_and_keeps_them_across_resumes():
    from types import SimpleNamespace
    from recipes.train import ComputeTime

    logged = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append(metrics))

    def trainer(device: str) -> SimpleNamespace:  # two ranks, the other spending as much CPU time as this one
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device),
                                                        reduce=lambda value, reduce_op: value * 2),
                               world_size=2, sanity_checking=False, loggers=[logger], global_step=10)

    on_gpu = ComputeTime()
    on_gpu.on_fit_start(trainer("cuda"), None)
    on_gpu.wall_start -= 1800  # half an hour on two devices
    on_gpu.on_validation_end(trainer("cuda"), None)
    assert set(logged[-1]) == {"cpu_hours", "gpu_hours"} and logged[-1]["gpu_hours"] >= 1.0
    resumed_on_cpu = ComputeTime()
    assert resumed_on_cpu.state_key == "CpuTime"  # the key checkpoints written before GPU time was counted use
    resumed_on_cpu.load_state_dict(on_gpu.state_dict())
    resumed_on_cpu.on_fit_start(trainer("cpu"), None)
    resumed_on_cpu.on_validation_end(trainer("cpu"), None)
    assert logged[-1]["gpu_hours"] == pytest.approx(logged[-2]["gpu_hours"], abs=1e-3)
    on_cpu = ComputeTime()
    on_cpu.on_fit_start(trainer("cpu"), None)
    on_cpu.cpu_start -= 360  # six minutes of this process's CPU time
    on_cpu.on_validation_end(trainer("cpu"), None)
    assert set(logged[-1]) == {"cpu_hours"}
    assert logged[-1]["cpu_hours"] == pytest.approx(0.2, abs=0.01)  # both ranks' time, not this one's alone
    assert on_cpu.state_dict()["cpu_hours"] == pytest.approx(0.2, abs=0.01)  # what the checkpoint keeps
