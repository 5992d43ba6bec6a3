"""CPU speed of the frame-level vocoder against HiFi-GAN v1's generator, side by side in one run.

Both models get the mel frames of the same 10 s of output audio (ours: 16 kHz, hop 160 ->
1000 frames; HiFi-GAN v1: 22.05 kHz, hop 256 -> 861 frames) and run with random weights, since
speed does not depend on the weights. The default trunk runs at its shipped operating points, phase
refinement included. Repeats are interleaved so that load from other processes hits every model
alike; the median is reported. The process's first decode is timed on its own as well: it is what
a user waits for after loading a model.

    python benchmarks/bench_vocoder.py [--threads 2] [--repeats 7] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

from timing import count_parameters, interleaved_timings
from vocoder import Vocoder, VocoderConfig
from vocoder.checkpoint import read_config
from vocoder.model import BACKBONES, DEFAULT_BACKBONE, DEFAULT_PHASE_START, REFINE_BEST, REFINE_DEFAULT
from vocoder.modules import MultiReceptiveField


class HiFiGANv1Generator(nn.Module):
    """HiFi-GAN v1's generator architecture (speed yardstick only; random weights).

    Upsample rates 8, 8, 2, 2 with kernels 16, 16, 4, 4 from 512 channels, each stage followed by
    a multi-receptive-field block (kernels 3, 7, 11, dilations 1, 3, 5), as in the paper's config.
    """

    def __init__(self, n_mels: int = 80, channels: int = 512, rates=(8, 8, 2, 2), kernels=(16, 16, 4, 4)) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(n_mels, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(rates, kernels)):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2))
            self.mrfs.append(MultiReceptiveField(c_out))
        self.conv_post = nn.Conv1d(channels // 2 ** len(rates), 1, 7, padding=3)
        self.hop_length = 1
        for rate in rates:
            self.hop_length *= rate

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for up, mrf in zip(self.ups, self.mrfs):
            x = mrf(up(F.leaky_relu(x, 0.1)))
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


# The shipped vocoder's configuration (read from its config.json; weights do not change the speed).
SHIPPED = read_config(VocoderConfig, Vocoder.default_pretrained, "Vocoder")


def interleaved_medians(runs: Dict[str, Callable[[], torch.Tensor]], repeats: int) -> Dict[str, float]:
    """Median wall time of each run (see :func:`timing.interleaved_timings`)."""
    return {name: statistics.median(values) for name, values in interleaved_timings(runs, repeats).items()}


def time_first_decode(seconds: float) -> float:
    """Wall time of the process's first default decode with the shipped configuration (run before
    any other decode: later calls find kernels and caches warm)."""
    vocoder = Vocoder(SHIPPED).eval()
    mel = torch.randn(1, vocoder.n_mels, int(seconds * vocoder.sample_rate) // vocoder.hop_length)
    start = time.perf_counter()
    vocoder.decode(mel)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0, help="output audio per call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    first_call = time_first_decode(args.seconds)
    runs: Dict[str, Callable[[], torch.Tensor]] = {}
    rows = []
    for kind, backbone in BACKBONES.items():
        config = VocoderConfig(backbone=replace(backbone))
        if kind == DEFAULT_BACKBONE:  # the shipped model's configuration (its amplitude is the fixed prior)
            config = replace(config, learned_amplitude=SHIPPED.learned_amplitude)
        vocoder = Vocoder(config).eval()
        frames = int(args.seconds * vocoder.sample_rate) // vocoder.hop_length
        mel = torch.randn(1, vocoder.n_mels, frames)
        settings = [(0, "network")]
        if kind == DEFAULT_BACKBONE:  # the shipped operating points, phase refinement included
            settings += [(REFINE_DEFAULT, DEFAULT_PHASE_START), (REFINE_DEFAULT, "pghi"), (REFINE_BEST, DEFAULT_PHASE_START)]
        for refine, start in dict.fromkeys(settings):
            name = f"ours ({kind} {backbone.dim}x{backbone.num_layers}, {start}, refine {refine})"
            runs[name] = lambda v=vocoder, m=mel, r=refine, s=start: v.decode(m, refine=r, start=s)
            rows.append((name, count_parameters(vocoder), vocoder.sample_rate, frames))
    hifigan = HiFiGANv1Generator().eval()
    hifigan_rate = 22_050
    frames = int(args.seconds * hifigan_rate) // hifigan.hop_length
    hifigan_mel = torch.randn(1, 80, frames)
    hifigan_name = "HiFi-GAN v1 generator"

    def run_hifigan() -> torch.Tensor:
        with torch.no_grad():
            return hifigan(hifigan_mel)

    runs[hifigan_name] = run_hifigan
    rows.append((hifigan_name, count_parameters(hifigan), hifigan_rate, frames))

    medians = interleaved_medians(runs, args.repeats)
    # Oversubscribed cores stall multi-threaded runs of small kernels far more than large ones: the
    # ratio is only meaningful on an otherwise idle machine (or with --threads 1).
    load = os.getloadavg()[0]
    print(f"{args.seconds:g} s of output audio per call, {args.threads} threads, median of {args.repeats}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'model':<52} {'params':>8} {'rate':>6} {'frames':>6} {'time s':>8} {'RTF':>7} {'vs HiFi-GAN':>11}")
    for name, params, rate, count in rows:
        seconds = medians[name]
        speedup = medians[hifigan_name] / seconds
        print(f"{name:<52} {params / 1e6:7.2f}M {rate:>6} {count:>6} {seconds:8.4f} "
              f"{seconds / args.seconds:7.4f} {speedup:10.1f}x")
    print(f"first decode of the process (shipped configuration, default refinement): {first_call:.3f} s")


if __name__ == "__main__":
    main()
