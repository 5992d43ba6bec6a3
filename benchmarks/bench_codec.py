"""CPU speed of the codec against EnCodec, side by side in one run, and its peak memory on long inputs.

Speed: every model encodes and decodes the same 10 s of audio (at its own sample rate), with
random weights, since speed does not depend on the weights: the shipped spectral design (default),
the waveform design with the frame-level decoder and with EnCodec's SEANet decoder, and EnCodec's 24 kHz architecture
from the ``encodec`` package at 6 kbps. Repeats are interleaved so that load from other processes
hits every model alike; the fastest repeat (and the median) is reported.

Memory (``--memory``, waveform design): each duration is encoded and decoded in a fresh process, and the peak
resident memory (``getrusage``) is compared with the memory held before encoding (model and
input), so the growth with duration shows whether chunking bounds the working set.

    python benchmarks/bench_codec.py [--threads 2] [--repeats 5] [--seconds 10]
    python benchmarks/bench_codec.py --memory [--memory-seconds 60 300]
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable, Dict, Tuple

import torch

from codec import ChunkConfig, Codec, CodecConfig, SpectralCodecConfig, WaveformCodec, WaveformCodecConfig
from timing import count_parameters, interleaved_timings


def test_signal(seconds: float, sample_rate: int) -> torch.Tensor:
    """A chirp with a little noise, ``[1, 1, T]``."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.4 * torch.sin(2 * math.pi * (100 + 200 * t) * t) + 0.02 * torch.randn(t.numel())
    return wav[None, None]


def codec_runs(name: str, config: CodecConfig, seconds: float) -> Tuple[dict, Tuple[str, int, int, float]]:
    model = Codec(config).eval()
    wav = test_signal(seconds, model.sample_rate)
    codes = model.encode(wav, model.sample_rate)
    runs = {f"{name}|encode": lambda: model.encode(wav, model.sample_rate),
            f"{name}|decode": lambda: model.decode(codes)}
    return runs, (name, count_parameters(model), model.sample_rate, model.bitrate / 1000)


def encodec_runs(seconds: float) -> Tuple[dict, Tuple[str, int, int, float]]:
    from encodec import EncodecModel  # only the baseline needs it at the top level of a run

    name = "EnCodec 24 kHz (6 kbps)"
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    model.eval()
    wav = test_signal(seconds, model.sample_rate)

    def encode():
        with torch.inference_mode():
            return model.encode(wav)

    frames = encode()

    def decode():
        with torch.inference_mode():
            return model.decode(frames)

    return {f"{name}|encode": encode, f"{name}|decode": decode}, (name, count_parameters(model), model.sample_rate, 6.0)


def speed(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    runs: Dict[str, Callable[[], object]] = {}
    rows = []
    for name, config in (("ours, spectral (shipped)", SpectralCodecConfig()),
                         ("ours, frame decoder", WaveformCodecConfig()),
                         ("ours, conv decoder", WaveformCodecConfig(decoder="conv"))):
        model_runs, row = codec_runs(name, config, args.seconds)
        runs.update(model_runs)
        rows.append(row)
    model_runs, row = encodec_runs(args.seconds)
    runs.update(model_runs)
    rows.append(row)

    timings = interleaved_timings(runs, args.repeats)
    # Other processes only ever add time, so the fastest repeat is the least disturbed estimate of
    # each model's cost; the ratios use it. The median is shown to judge how noisy the run was.
    best = {name: min(values) for name, values in timings.items()}
    median = {name: statistics.median(values) for name, values in timings.items()}
    print(f"{args.seconds:g} s of audio per call, {args.threads} threads, {args.repeats} interleaved repeats: "
          f"best (median) seconds")
    print(f"{'model':<28} {'params':>8} {'rate':>6} {'kbps':>5} {'encode s':>16} {'decode s':>16} "
          f"{'RTF':>7} {'vs EnCodec':>10}")
    totals = {name: best[f"{name}|encode"] + best[f"{name}|decode"] for name, *_ in rows}
    baseline = totals[rows[-1][0]]
    for name, params, rate, kbps in rows:
        enc, dec = f"{name}|encode", f"{name}|decode"
        print(f"{name:<28} {params / 1e6:7.2f}M {rate:>6} {kbps:5.1f} {best[enc]:7.3f} ({median[enc]:6.3f}) "
              f"{best[dec]:7.3f} ({median[dec]:6.3f}) {totals[name] / args.seconds:7.4f} {baseline / totals[name]:9.2f}x")
    spectral, frame, conv = rows[0][0], rows[1][0], rows[2][0]
    print(f"encode+decode speed-up over EnCodec (goal >= 2x): spectral codec with its default phase refinement "
          f"{baseline / totals[spectral]:.2f}x, frame decoder {baseline / totals[frame]:.2f}x, "
          f"conv decoder {baseline / totals[conv]:.2f}x")
    print(f"decode speed-up of the frame decoder over the conv decoder: "
          f"{best[f'{conv}|decode'] / best[f'{frame}|decode']:.2f}x")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def memory_child(seconds: float, chunk_frames: int) -> None:
    """Runs in a fresh process: prints 'before encode decode' peak-RSS figures in MB."""
    torch.manual_seed(0)
    model = WaveformCodec(WaveformCodecConfig(chunking=replace(ChunkConfig.waveform(), frames=chunk_frames))).eval()
    wav = 0.1 * torch.randn(1, 1, int(seconds * model.sample_rate))
    before = peak_rss_mb()  # libraries, model and input
    codes = model.encode(wav, model.sample_rate, progress=False)
    after_encode = peak_rss_mb()
    model.decode(codes, progress=False)
    print(f"{before:.1f} {after_encode:.1f} {peak_rss_mb():.1f}")


def memory(args: argparse.Namespace) -> None:
    print(f"peak resident memory (MB), waveform design, chunks of {args.chunk_frames} frames, {args.threads} threads")
    print(f"{'audio s':>8} {'input MB':>9} {'before':>8} {'encode':>8} {'decode':>8} {'enc growth':>11} {'wall s':>7}")
    results = []
    for seconds in args.memory_seconds:
        start = time.perf_counter()
        command = [sys.executable, __file__, "--memory-child", str(seconds), "--threads", str(args.threads),
                   "--chunk-frames", str(args.chunk_frames)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
        before, encode, decode = map(float, out[-3:])
        input_mb = seconds * 16_000 * 4 / 2**20
        results.append((seconds, before, max(encode, decode)))
        print(f"{seconds:8.0f} {input_mb:9.1f} {before:8.1f} {encode:8.1f} {decode:8.1f} "
              f"{encode - before:11.1f} {time.perf_counter() - start:7.1f}")
    # Chunking bounds the working set (peak minus what was held before encoding). What still grows
    # with duration: the caller's input, prepare_waveform's mono copy of it, the codes (6 MB per
    # hour) and the decoded output. The projection adds all of them to the largest working set.
    longest, before, _ = results[-1]
    working = [peak - held for _, held, peak in results]
    hour_mb = 3600.0 * 16_000 * 4 / 2**20
    extra_input = hour_mb - longest * 16_000 * 4 / 2**20
    projected = before + 2 * extra_input + max(working) + hour_mb
    print(f"working set {min(working):.0f}..{max(working):.0f} MB, not growing with duration; projected peak for "
          f"one hour of 16 kHz audio (input, its mono copy and the decoded output at {hour_mb:.0f} MB each): "
          f"{projected:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per call")
    parser.add_argument("--memory", action="store_true", help="measure peak memory on long inputs instead")
    parser.add_argument("--memory-seconds", type=float, nargs="+", default=[60.0, 300.0, 600.0])
    parser.add_argument("--chunk-frames", type=int, default=SpectralCodecConfig().chunking.frames)
    parser.add_argument("--memory-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(args.memory_child, args.chunk_frames)
    elif args.memory:
        memory(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
