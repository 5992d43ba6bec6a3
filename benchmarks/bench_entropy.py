"""Bits per second of entropy-coded .grvq streams (format version 3) per clip set, against the fixed
10-bit codes (2 kbps with 4 codebooks, 1 kbps with 2), and the entropy coder's speed on one thread.

Clips come from the corpus manifest (``recipes.prepare_data``): the three held-out speech sources the
codec never trained on (and the shipped entropy table was never fitted on), the validation split of
the in-domain speech, music and effects (``recipes.evaluate``'s clip sets and clips, the first ``--max-seconds`` of each). Each clip is compressed
as its own stream by the shipped codec; the payload is counted without header and CRC.

    python benchmarks/bench_entropy.py --manifest ~/.cache/grvq-toolkit/corpus3/manifest.jsonl [--clips 40]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from codec import Codec, bitstream, entropy
from recipes.evaluate import CLIP_SETS, choose_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=24, help="clips per set (the report's choice and order)")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained()
    table = entropy.table_for(codec.fingerprint())
    print(f"entropy table {table.table_id.hex()} for model {codec.fingerprint().hex()}; torch threads 1")
    print("| clip set | clips | seconds | 4 codebooks: b/s (vs 2000) | saving | 2 codebooks: b/s (vs 1000) | saving |"
          " entropy encode+decode x real time |")
    print("|---|---|---|---|---|---|---|---|")
    for clip_set in CLIP_SETS:
        clips = choose_clips(args.manifest, replace(clip_set, count=args.clips), args.max_seconds)
        seconds = bits4 = bits2 = coder_s = 0.0
        for _, wav in clips:
            header, codes = bitstream.unpack(codec.compress(wav, codec.sample_rate, entropy_coding=False))
            started = time.perf_counter()
            payload = entropy.encode_codes(codes, table)
            back = entropy.decode_codes(payload, table, *codes.shape)
            coder_s += time.perf_counter() - started
            assert np.array_equal(back, codes)
            bits4 += 8 * len(payload)
            bits2 += 8 * len(entropy.encode_codes(codes[:, :2], table))
            seconds += header.length / header.sample_rate
        print(f"| {clip_set.name} | {len(clips)} | {seconds:.0f} | {bits4 / seconds:.0f} | {1 - bits4 / seconds / 2000:.1%} "
              f"| {bits2 / seconds:.0f} | {1 - bits2 / seconds / 1000:.1%} | {coder_s / seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
