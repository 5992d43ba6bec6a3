"""Streaming codec (issue 25): algorithmic latency and compute per 20 ms frame on one CPU thread.

The causal variant at the shipped size (``SpectralCodecConfig.streaming()``), warm-started from the
shipped offline codec when it is there (compute does not depend on the weights, and nothing here is
trained for streaming yet). Each repeat codes ``--seconds`` of a chirp with noise through
``StreamEncoder``/``StreamDecoder`` one frame at a time, as a live stream would; encode and decode
repeats are interleaved so that load from other processes hits both alike. The fastest repeat and the
median are printed per 20 ms frame, with the real-time share of encode + decode against the targets
(latency <= 40 ms, encode + decode <= 20 % of real time on one thread).

Later sessions add the quality rows here (streaming against offline, Opus, Codec2; 0/5/10 % loss).

    python benchmarks/bench_streaming.py [--threads 1] [--repeats 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import SpectralCodec, SpectralCodecConfig  # noqa: E402
from codec.model import DEFAULT_PRETRAINED, read_saved_codec  # noqa: E402
from codec.streaming import algorithmic_latency  # noqa: E402
from timing import count_parameters, interleaved_timings  # noqa: E402

LATENCY_TARGET_MS = 40.0
REAL_TIME_TARGET = 0.20


def test_signal(seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(0)
    return (0.4 * np.sin(2 * math.pi * (100 + 200 * t) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def streaming_codec() -> tuple:
    """The causal codec at the shipped size, and where its weights came from."""
    if (DEFAULT_PRETRAINED / "model.safetensors").is_file():
        _, saved, _ = read_saved_codec(DEFAULT_PRETRAINED)
        model = SpectralCodec(SpectralCodecConfig.streaming(vocoder=saved.vocoder))
        model.load_weights_from(DEFAULT_PRETRAINED)
        return model.eval(), "shipped offline weights (warm start, not fine-tuned)"
    torch.manual_seed(0)
    return SpectralCodec(SpectralCodecConfig.streaming()).eval(), "random weights"


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, weights = streaming_codec()
    rate, hop = model.sample_rate, model.hop_length
    pcm = test_signal(args.seconds, rate)
    frames = [pcm[first:first + hop] for first in range(0, len(pcm) // hop * hop, hop)]
    packets = model.stream_encoder().push(pcm)

    def encode() -> None:
        encoder = model.stream_encoder()
        for frame in frames:
            encoder.push(frame)

    def decode() -> None:
        decoder = model.stream_decoder()
        for packet in packets:
            decoder.push(packet)

    times: Dict[str, List[float]] = interleaved_timings({"encode": encode, "decode": decode}, args.repeats)
    latency = algorithmic_latency(model)
    frame_ms = 1000 * hop / rate
    print(f"streaming codec: SpectralCodecConfig.streaming(), {count_parameters(model) / 1e6:.1f} M parameters "
          f"({weights}); {torch.get_num_threads()} thread(s), {len(frames)} frames of {frame_ms:.0f} ms")
    print(f"algorithmic latency: {latency.total_ms:.1f} ms = frame {latency.frame_ms:.1f} + lookahead "
          f"{latency.lookahead_ms:.1f} + synthesis {latency.synthesis_ms:.1f}  "
          f"(target <= {LATENCY_TARGET_MS:.0f}: {'met' if latency.total_ms <= LATENCY_TARGET_MS else 'MISSED'})")
    # One frame at a time every weight is read once per frame: on a CPU the weight bytes, not the
    # arithmetic, set the floor (dense layers on 1-2 frames are matrix-vector products).
    weights = {name: 4 * count_parameters(part) / 1e6 for name, part in (("encode", model.encoder),
                                                                          ("decode", model.decoder))}
    print(f"weights read per frame: encode {weights['encode']:.1f} MB, decode {weights['decode']:.1f} MB (fp32)")
    print(f"{'':8} {'best ms/frame':>14} {'median ms/frame':>16} {'x real time (best)':>19}")
    best_total = 0.0
    for name, values in times.items():
        best, median = min(values) / len(frames) * 1000, statistics.median(values) / len(frames) * 1000
        best_total += best
        print(f"{name:8} {best:14.2f} {median:16.2f} {best / frame_ms:19.3f}")
    share = best_total / frame_ms
    print(f"{'total':8} {best_total:14.2f} {'':16} {share:19.3f}  "
          f"(target <= {REAL_TIME_TARGET:.2f}: {'met' if share <= REAL_TIME_TARGET else 'MISSED'}; "
          f"real-time margin {frame_ms / best_total:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
