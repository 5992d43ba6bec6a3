"""Generation speed on the CPU: KV cache vs recomputation, one doubled CFG batch vs two passes,
and the real-time factor of the shipped model, with and without the codec's phase refinement.

    python benchmarks/bench_generation.py [--threads 2] [--steps 500] [--duration 10]

Sections 1-2 run their competitors in one process on the same random-weight model and print
ratios; section 3 loads the shipped model (random weights of the default size when none ships). The
recomputation and two-pass baselines mirror ``AudioLanguageModel.generate`` step for step
(same sampling functions, same seed), so their tokens must match the library's.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from codec import SpectralCodec
from generation import AudioGen, AudioLanguageModel, LMConfig, SamplingParams, TextCondition, build_conditioner
from generation.sampling import classifier_free_guidance, sample_tokens
from vocoder.checkpoint import CheckpointError

# A mid-size model for the cache and CFG comparisons, so the quadratic baseline finishes in about a minute.
COMPARE_CONFIG = LMConfig(dim=256, num_layers=4, num_heads=4, ffn_dim=1024, conditioner="hashed:384")


def prepare(lm: AudioLanguageModel, num_steps: int):
    num_frames = lm.pattern.max_frames(num_steps)
    seq = torch.full((1, lm.config.num_codebooks, lm.pattern.sequence_length(num_frames)), lm.config.special_token)
    return num_frames, seq, lm.pattern.valid_mask(num_frames)


@torch.no_grad()
def generate_recomputing(lm: AudioLanguageModel, condition: TextCondition, num_steps: int, seed: int) -> torch.Tensor:
    """Conditional sampling that re-runs the whole prefix at every step (no cache)."""
    generator = torch.Generator().manual_seed(seed)
    num_frames, seq, valid = prepare(lm, num_steps)
    for step in range(seq.shape[-1]):
        logits = lm(lm._sequence_inputs(seq)[:, :, :step + 1], condition, last_only=True)[:, :, -1]
        sampled = sample_tokens(logits, SamplingParams(), generator)
        seq[:, :, step] = torch.where(valid[:, step], sampled, lm.config.special_token)
    return lm.pattern.revert(seq, num_frames)


@torch.no_grad()
def generate_two_passes(lm: AudioLanguageModel, condition: TextCondition, num_steps: int, cfg_coef: float,
                        seed: int) -> torch.Tensor:
    """Classifier-free guidance with separate conditional and unconditional passes (two caches)."""
    generator = torch.Generator().manual_seed(seed)
    num_frames, seq, valid = prepare(lm, num_steps)
    null = TextCondition.null(1, lm.config.text_dim)
    caches = [lm.new_cache(1), lm.new_cache(1)]
    inputs = lm._sequence_inputs(seq)[:, :, :1]
    for step in range(seq.shape[-1]):
        cond_logits, uncond_logits = (lm(inputs, c, cache)[:, :, -1] for c, cache in zip((condition, null), caches))
        sampled = sample_tokens(classifier_free_guidance(cond_logits, uncond_logits, cfg_coef), SamplingParams(), generator)
        seq[:, :, step] = torch.where(valid[:, step], sampled, lm.config.special_token)
        inputs = seq[:, :, step:step + 1]
    return lm.pattern.revert(seq, num_frames)


class Clock:
    """Wall-clock and process CPU seconds since creation (CPU time is what a busy machine cannot inflate)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def timed(fn, *args, **kwargs):
    clock = Clock()
    result = fn(*args, **kwargs)
    return result, clock.read()


def row(name: str, seconds: tuple[float, float], steps: int) -> None:
    wall, cpu = seconds
    print(f"  {name:<11} {wall:7.2f} s wall {cpu:7.2f} s CPU  {steps / wall:8.1f} steps/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The timings are wall-clock; a busy machine inflates them, so say how busy it was.
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    lm = AudioLanguageModel(replace(COMPARE_CONFIG, max_seq_len=args.steps)).eval()
    condition = build_conditioner(COMPARE_CONFIG.conditioner)(["a dog barking in a large hall"])
    num_frames, steps = lm.pattern.max_frames(args.steps), args.steps
    params = sum(p.numel() for p in lm.parameters()) / 1e6
    print(f"\n[1] KV cache vs recomputation: {steps} steps, {params:.1f} M-parameter LM, batch 1, no CFG")
    cached, t_cache = timed(lm.generate, condition, num_frames, generator=torch.Generator().manual_seed(0))
    recomputed, t_full = timed(generate_recomputing, lm, condition, steps, seed=0)
    row("cached", t_cache, steps)
    row("recompute", t_full, steps)
    print(f"  speed-up    {t_full[0] / t_cache[0]:7.1f}x wall {t_full[1] / t_cache[1]:5.1f}x CPU   "
          f"same tokens: {torch.equal(cached, recomputed)}")

    print(f"\n[2] classifier-free guidance (γ = 3): one doubled batch vs two passes, {steps} steps")
    doubled, t_doubled = timed(lm.generate, condition, num_frames, cfg_coef=3.0, generator=torch.Generator().manual_seed(0))
    separate, t_separate = timed(generate_two_passes, lm, condition, steps, 3.0, seed=0)
    row("doubled", t_doubled, steps)
    row("two passes", t_separate, steps)
    print(f"  speed-up    {t_separate[0] / t_doubled[0]:7.2f}x wall {t_separate[1] / t_doubled[1]:5.2f}x CPU   "
          f"same tokens: {torch.equal(doubled, separate)}")

    try:
        gen, what = AudioGen.from_pretrained(), "the shipped model"
    except CheckpointError:
        gen, what = AudioGen(AudioLanguageModel(LMConfig()), SpectralCodec()), "default configs, random weights"
    print(f"\n[3] real-time factor: {args.duration:g} s of audio with {what} (MiniLM text, γ = 3, top-k 250)")
    lm_params = sum(p.numel() for p in gen.lm.parameters()) / 1e6
    gen.generate(["warm-up"], duration=0.2, seed=0)
    total_steps = gen.lm.steps_to_sample(round(args.duration * gen.frame_rate))
    tokens, t_tokens = timed(gen.generate_tokens, ["rain falling"], duration=args.duration, cfg_coef=3.0, seed=0)
    print(f"  LM {lm_params:.1f} M parameters, {total_steps} steps")
    row("tokens", t_tokens, total_steps)
    for name, refine in (("decode", None), ("decode, no phase refinement", 0)):
        wav, t_decode = timed(gen.codec.decode, tokens, refine=refine)
        wall, cpu = t_tokens[0] + t_decode[0], t_tokens[1] + t_decode[1]
        print(f"  {name}: {t_decode[0]:.2f} s wall; total {wall:.2f} s wall for {wav.shape[-1] / gen.sample_rate:.2f} s "
              f"of audio: RTF {wall / args.duration:.2f} wall, {cpu / args.duration:.2f} CPU-seconds per second "
              f"(goal: RTF <= 1 on {args.threads} threads)")

if __name__ == "__main__":
    main()
