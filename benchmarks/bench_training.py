"""Training speed of each recipe, fp32 against bf16 autocast (and bf16 + torch.compile), side by side in one run.

Every recipe is built from its own config and Lightning module (``recipes.config.load_recipe_config``
and ``CodecModule`` / ``VocoderModule`` / ``LanguageModelModule``) at its recipe batch size, and
trained on synthetic batches of the right shapes (random audio, random tokens and text states):
this measures speed only, so no corpus is needed and the losses mean nothing. A step is what the
recipe's ``training_step`` does: forward, backward, gradient clipping, optimizer and scheduler
step (for the vocoder's adversarial phase, the discriminator's step too). Data loading and
augmentation are not timed. Each variant (precision, compilation) trains its own copy of the model
built from the same seed; the variants' steps are interleaved so that load from other processes
hits every variant alike, after ``--warmup`` untimed steps each.

    python benchmarks/bench_training.py [--recipes codec vocoder lm] [--steps 5] [--warmup 1] [--threads 2]
    python benchmarks/bench_training.py --precisions fp32 bf16 --compile --json runs/bench_training.json
    python benchmarks/bench_training.py --device cuda --compile

On a CPU without native bfloat16 (no AVX512-BF16 or AMX) bf16 is emulated and slower than fp32;
the benchmark still runs it and prints the ratio (``--precisions fp32`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from recipes.config import CONFIG_DIR, load_recipe_config  # noqa: E402
from recipes.precision import cpu_has_native_bf16  # noqa: E402
from timing import count_parameters  # noqa: E402

RECIPES = ("codec", "vocoder", "lm")
PRECISIONS = ("fp32", "bf16")
TEXT_TOKENS = 16  # caption length in text-encoder tokens for the LM's random text states

# Recipe modules warn about deprecated weight norm and Lightning about calls outside a Trainer: noise here.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*self.trainer.*")


@dataclass
class Workload:
    """One recipe's trainable module, one synthetic batch and what a step processes."""

    module: nn.Module
    model: nn.Module  # the network the recipe trains and exports
    step: Callable[[], None]
    examples: int  # per step
    units: float  # per step: audio seconds or tokens
    unit: str
    shape: str  # the batch, in words


@dataclass
class Variant:
    """A way of running the same training step: a precision, maybe compiled."""

    name: str
    bf16: bool
    compile: bool


@dataclass
class RecipeResult:
    """Per-variant step times of one recipe, and the variants that could not run."""

    recipe: str
    shape: str
    params: int
    trainable: int  # the spectral codec's vocoder is frozen
    examples: int
    units: float
    unit: str
    times: Dict[str, List[float]] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` (what Lightning's bf16-mixed does around the forward), or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a step's wall time is its whole cost."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recipe_config(recipe: str, tiny: bool) -> dict:
    """The recipe's shipped config (the smoke preset with ``tiny``), without the corpus-side settings
    a training step does not use (speech metrics need their packages at construction)."""
    if recipe == "lm":
        # The shipped LM size; hashed text: the frozen MiniLM encoder is cached per caption, not trained.
        path = None if tiny else CONFIG_DIR / "lm_audiogen.yaml"
        overrides = [] if tiny else ["model.conditioner=hashed:384"]
        return load_recipe_config("lm", path, overrides, smoke=tiny)
    return load_recipe_config(recipe, overrides=["data.speech=false"], smoke=tiny)


def gan_workload(recipe: str, config: dict, device: torch.device, bf16: bool, adversarial: bool) -> Workload:
    """A codec or vocoder step as ``AudioGanModule.training_step`` does it, on random audio."""
    if recipe == "codec":
        from recipes.codec_module import CodecModule as Module
    else:
        from recipes.vocoder_module import VocoderModule as Module
    module = Module(config).to(device).train()
    (gen_opt, disc_opt), _ = module.configure_optimizers()
    gen_sched = torch.optim.lr_scheduler.ExponentialLR(gen_opt, module.optim["lr_decay"])
    trainable = [p for group in gen_opt.param_groups for p in group["params"]]
    clip = module.optim["grad_clip"]
    # The spectral codec has no waveform to judge: its recipe never runs the discriminators.
    adversarial = adversarial and not (recipe == "codec" and not module.generator.adversarial_training)
    data = config["data"]
    samples = int(data["segment_seconds"] * module.sample_rate)
    audio = 0.1 * torch.randn(data["batch_size"], 1, samples, device=device)

    def step() -> None:
        with autocast(device, bf16):
            generated, loss, _ = module.generator_loss(audio, adversarial)
        gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, clip)
        gen_opt.step()
        gen_sched.step()
        if adversarial:
            from vocoder.losses import adversarial_discriminator_loss

            with autocast(device, bf16):
                disc_loss = adversarial_discriminator_loss(module.discriminators, generated.detach(), audio)
            disc_opt.zero_grad(set_to_none=True)
            disc_loss.backward()
            nn.utils.clip_grad_norm_(module.discriminators.parameters(), clip)
            disc_opt.step()

    phase = "generator + discriminators" if adversarial else "reconstruction only"
    shape = f"{data['batch_size']} x {data['segment_seconds']:g} s at {module.sample_rate} Hz, {phase}"
    return Workload(module, module.generator, step, data["batch_size"], data["batch_size"] * data["segment_seconds"], "audio s", shape)


def lm_workload(config: dict, device: torch.device, bf16: bool) -> Workload:
    """An LM step as ``LanguageModelModule.training_step`` (with Lightning's gradient clipping) does
    it, on random codes of the longest crop the recipe takes and random text states."""
    from recipes.lm_module import LanguageModelModule

    module = LanguageModelModule(config).to(device).train()
    (optimizer,), (schedule,) = module.configure_optimizers()
    lm, lm_config = module.lm, module.lm_config
    batch = config["data"]["batch_size"]
    frames = min(config["data"]["max_frames"] or module._max_frames(), module._max_frames())
    codes = torch.randint(lm_config.codebook_size, (batch, lm_config.num_codebooks, frames), device=device)
    states = torch.randn(batch, TEXT_TOKENS, lm_config.text_dim, device=device)
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.bool, device=device)
    clip = config["trainer"]["gradient_clip_val"]

    def step() -> None:
        with autocast(device, bf16):
            loss = lm.loss(codes, states, mask).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(lm.parameters(), clip)
        optimizer.step()
        schedule["scheduler"].step()

    tokens = batch * lm_config.num_codebooks * frames
    shape = f"{batch} x {lm_config.num_codebooks} codebooks x {frames} frames"
    return Workload(module, lm, step, batch, tokens, "tokens", shape)


def heavy_parts(recipe: str, module: nn.Module) -> List[nn.Module]:
    """The submodules worth compiling: the trained networks, not the frozen or parameter-free parts."""
    if recipe == "lm":
        return [module.lm]
    parts = [child for child in module.generator.children()
             if any(p.requires_grad for p in child.parameters())]
    return parts + [module.discriminators]


def build(recipe: str, config: dict, variant: Variant, device: torch.device, adversarial: bool) -> Workload:
    """A fresh model (same seed for every variant) and its step; compiled parts are compiled in place."""
    torch.manual_seed(0)
    if recipe == "lm":
        workload = lm_workload(config, device, variant.bf16)
    else:
        workload = gan_workload(recipe, config, device, variant.bf16, adversarial)
    if variant.compile:
        for part in heavy_parts(recipe, workload.module):
            part.compile()
    return workload


def timed_step(workload: Workload, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    workload.step()
    synchronize(device)
    return time.perf_counter() - start


def run_recipe(recipe: str, variants: Sequence[Variant], args: argparse.Namespace, device: torch.device) -> RecipeResult:
    """Build every variant, warm each up (compilation happens there), then interleave the timed steps."""
    config = recipe_config(recipe, args.tiny)
    workloads: Dict[str, Workload] = {}
    skipped: Dict[str, str] = {}
    for variant in variants:
        try:
            workload = build(recipe, config, variant, device, args.adversarial)
            # A compiled step compiles its forward on the first call and its backward on the first backward.
            for _ in range(max(args.warmup, 2) if variant.compile else args.warmup):
                timed_step(workload, device)
        except Exception as err:  # a variant this torch/CPU cannot run (compiler missing, op without bf16)
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            skipped[variant.name] = f"{type(err).__name__}: {first_line}"[:300]
            print(f"  note: {recipe} {variant.name} skipped ({skipped[variant.name]})", flush=True)
            continue
        workloads[variant.name] = workload
    if not workloads:
        raise RuntimeError(f"no variant of the {recipe} recipe could run: {skipped}")
    first = next(iter(workloads.values()))
    result = RecipeResult(recipe, first.shape, count_parameters(first.model),
                          sum(p.numel() for p in first.model.parameters() if p.requires_grad), first.examples, first.units,
                          first.unit, skipped=skipped)
    result.times = {name: [] for name in workloads}
    for _ in range(args.steps):
        for name, workload in workloads.items():
            result.times[name].append(timed_step(workload, device))
    return result


def summarize(result: RecipeResult) -> Dict[str, dict]:
    """Per variant: best and median step seconds, rates from the best step, and the speed-up over fp32."""
    # Other processes only ever add time, so the fastest step is the least disturbed estimate; the
    # median shows how noisy the run was.
    rows = {}
    for name, times in result.times.items():
        best = min(times)
        rows[name] = {"step_s_best": best, "step_s_median": statistics.median(times),
                      "examples_per_s": result.examples / best, "units_per_s": result.units / best}
    baseline = rows.get("fp32")
    for row in rows.values():
        row["vs_fp32"] = baseline["step_s_best"] / row["step_s_best"] if baseline else None
    return rows


def print_result(result: RecipeResult, rows: Dict[str, dict]) -> None:
    print(f"\n{result.recipe}: {result.params / 1e6:.2f}M-parameter model "
          f"({result.trainable / 1e6:.2f}M trained), batch {result.shape}")
    print(f"{'variant':<14} {'step s best (median)':>21} {'examples/s':>11} {result.unit + '/s':>12} {'vs fp32':>8}")
    for name, row in rows.items():
        ratio = f"{row['vs_fp32']:7.2f}x" if row["vs_fp32"] is not None else "      -"
        print(f"{name:<14} {row['step_s_best']:9.3f} ({row['step_s_median']:8.3f}) {row['examples_per_s']:11.2f} "
              f"{row['units_per_s']:12.1f} {ratio:>8}")
    for name, reason in result.skipped.items():
        print(f"{name:<14} skipped: {reason[:160]}")


def environment(device: torch.device) -> dict:
    """What the numbers depend on: device, threads, CPU vector capability, native bf16, load."""
    info = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_native_bf16": cpu_has_native_bf16(),
            "cpus": os.cpu_count(), "load_average": list(os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_bf16"] = torch.cuda.is_bf16_supported()
    return info


def variants_of(args: argparse.Namespace) -> List[Variant]:
    variants = [Variant(name, name == "bf16", False) for name in args.precisions]
    if args.compile:
        variants.append(Variant("bf16+compile", True, True))
    return variants


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--compile", action="store_true", help="also bf16 with the heavy submodules torch.compile'd")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first (at least 2 for compiled variants)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tiny", action="store_true", help="the recipes' smoke models and batches: a quick check")
    parser.add_argument("--adversarial", action="store_true",
                        help="vocoder: time the adversarial phase (discriminators too) instead of the "
                             "reconstruction-only first phase")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps and --threads must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(device)
    gpu = f", {env['gpu']} (bf16 {env['gpu_bf16']})" if "gpu" in env else ""
    print(f"torch {env['torch']}, device {device}{gpu}, {env['threads']} threads, CPU capability "
          f"{env['cpu_capability']}, native CPU bf16 {env['cpu_native_bf16']}, load average "
          f"{env['load_average'][0]:.1f} on {env['cpus']} CPUs")
    print(f"synthetic batches (random audio, random tokens): a speed benchmark, the losses mean nothing; "
          f"{args.warmup} warm-up + {args.steps} interleaved timed steps per variant"
          f"{'; tiny smoke-config models' if args.tiny else ''}", flush=True)
    report = {"environment": env, "synthetic": True, "tiny": args.tiny, "steps": args.steps,
              "warmup": args.warmup, "recipes": {}}
    for recipe in args.recipes:
        result = run_recipe(recipe, variants_of(args), args, device)
        rows = summarize(result)
        print_result(result, rows)
        report["recipes"][recipe] = {"batch": result.shape, "params": result.params,
                                     "trainable_params": result.trainable, "examples_per_step": result.examples,
                                     "units_per_step": result.units, "unit": result.unit, "variants": rows,
                                     "skipped": result.skipped, "step_times": result.times}
    env["load_average_end"] = list(os.getloadavg())
    print(f"\nload average at the end {env['load_average_end'][0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
